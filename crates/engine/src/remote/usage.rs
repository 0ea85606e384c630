//! Token accounting of one completions reply: how many tokens each choice took.
//!
//! Servers disagree about `usage.completion_tokens` when a request asks for n > 1
//! continuations: vLLM, SGLang and `anchorscope serve` sum it over the n choices; others count
//! one choice or something else again (llama-server's replies gave about one choice's worth for
//! n = 8, so an even split recorded 8 tokens for 64-token rollouts); a few put a `usage` inside
//! each choice. The reply never says which, so [`per_choice_tokens`] compares the server's
//! number with our own count of each choice's text and trusts the server only where the two
//! agree on what it means.

/// Where the per-choice counts of one reply came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The server counted each choice (a `usage` per choice, or the reply's usage for n = 1).
    ServerPerChoice,
    /// The server's total for the reply matched the sum of our counts: it is shared out over
    /// the choices in proportion to our counts, so the reply's sum is the server's exactly.
    ServerTotalShared,
    /// Our own count of each choice's text (the server's number was absent, or not the sum of
    /// the choices).
    Counted,
}

/// Tokens the server may count beyond the returned text per choice: the end-of-sequence token,
/// and a stop string's tokens that were cut from the text.
const SLACK_PER_CHOICE: u64 = 2;

/// The token count of each choice (in choice order) and where the counts came from.
///
/// - `reply_total`: the reply's `usage.completion_tokens`.
/// - `server_per_choice`: each choice's own `usage.completion_tokens`, when it has one.
/// - `ours`: our count of each choice's text (the same length as `server_per_choice`).
/// - `ours_exact`: whether `ours` comes from the served model's tokenizer (then the server's
///   total must match closely to count as a sum); else it is an estimate, and the total counts
///   as a sum when it is nearer to the sum of our counts than to one choice's share of it.
/// - `max_tokens`: the request's cap; a server count above it is not a count of one choice.
pub fn per_choice_tokens(
    reply_total: Option<u64>,
    server_per_choice: &[Option<u64>],
    ours: &[u64],
    ours_exact: bool,
    max_tokens: u32,
) -> (Vec<u64>, TokenSource) {
    let n = ours.len();
    let cap = u64::from(max_tokens) + SLACK_PER_CHOICE;
    // No continuation is longer than its cap: a re-tokenized or estimated text may be.
    let ours: Vec<u64> = ours.iter().map(|&t| t.min(u64::from(max_tokens))).collect();
    let ours = ours.as_slice();
    let per_choice: Option<Vec<u64>> = server_per_choice.iter().copied().collect();
    if let Some(counts) = per_choice.filter(|c| c.len() == n && c.iter().all(|&t| t <= cap)) {
        return (counts, TokenSource::ServerPerChoice);
    }
    let Some(total) = reply_total else {
        return (ours.to_vec(), TokenSource::Counted);
    };
    if n == 1 && total <= cap {
        return (vec![total], TokenSource::ServerPerChoice);
    }
    if n > 1 && total <= cap.saturating_mul(n as u64) && is_sum(total, ours, ours_exact) {
        let shares = share_out(total, ours, u64::from(max_tokens));
        return (shares, TokenSource::ServerTotalShared);
    }
    (ours.to_vec(), TokenSource::Counted)
}

/// Whether `total` is the sum over the choices whose own counts are `ours` (n > 1).
fn is_sum(total: u64, ours: &[u64], exact: bool) -> bool {
    let n = ours.len() as u64;
    let sum: u64 = ours.iter().sum();
    if sum == 0 {
        // Only empty texts: a sum is at most the end tokens of each choice.
        return total <= SLACK_PER_CHOICE * n;
    }
    if exact {
        // Re-tokenizing text can differ from the generated ids by a token or two per choice.
        let tolerance = SLACK_PER_CHOICE * n + sum / 20;
        total.abs_diff(sum) <= tolerance
    } else {
        // Two readings: the sum of the choices (≈ sum) or one choice's worth (≈ sum / n). The
        // estimate decides between them at their geometric midpoint, sum / √n; above the sum
        // there is no other reading (the caller has checked the total against the caps).
        total as f64 > sum as f64 / (n as f64).sqrt()
    }
}

/// `total` split in proportion to `weights`, no share above `cap` (what one choice can take):
/// a share over it is set to the cap and the rest is split again among the others. The shares
/// add up to `total` unless it exceeds `cap` for every choice.
fn share_out(total: u64, weights: &[u64], cap: u64) -> Vec<u64> {
    let mut shares = vec![0; weights.len()];
    let mut open: Vec<usize> = (0..weights.len()).collect();
    let mut left = total.min(cap.saturating_mul(weights.len() as u64));
    while !open.is_empty() {
        let split = proportional(left, &open.iter().map(|&i| weights[i]).collect::<Vec<_>>());
        if split.iter().all(|&s| s <= cap) {
            for (&i, s) in open.iter().zip(split) {
                shares[i] = s;
            }
            break;
        }
        let mut still_open = Vec::with_capacity(open.len());
        for (&i, s) in open.iter().zip(split) {
            if s > cap {
                shares[i] = cap;
                left -= cap;
            } else {
                still_open.push(i);
            }
        }
        open = still_open;
    }
    shares
}

/// `total` split in proportion to `weights` (equal shares when they are all 0), by largest
/// remainder so the shares add up to `total` exactly.
fn proportional(total: u64, weights: &[u64]) -> Vec<u64> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let sum: u64 = weights.iter().sum();
    let weights: Vec<u128> = if sum == 0 {
        vec![1; n]
    } else {
        weights.iter().map(|&w| u128::from(w)).collect()
    };
    let sum: u128 = weights.iter().sum();
    let total = u128::from(total);
    let mut shares: Vec<u128> = weights.iter().map(|w| total * w / sum).collect();
    let mut order: Vec<usize> = (0..n).collect();
    // Largest remainder first; ties to the earlier choice.
    order.sort_by_key(|&i| std::cmp::Reverse(total * weights[i] % sum));
    let left = total - shares.iter().sum::<u128>();
    for &i in order.iter().take(left as usize) {
        shares[i] += 1;
    }
    shares
        .into_iter()
        .map(|s| u64::try_from(s).unwrap_or(u64::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::protocol::parse_completion;

    /// The decision on a reply body, with `ours` standing for our tokenizer's counts.
    fn decide(body: &str, ours: &[u64], exact: bool, max_tokens: u32) -> (Vec<u64>, TokenSource) {
        let reply = parse_completion(body, ours.len()).unwrap();
        let per_choice: Vec<Option<u64>> =
            reply.choices.iter().map(|c| c.completion_tokens).collect();
        per_choice_tokens(
            reply.completion_tokens,
            &per_choice,
            ours,
            exact,
            max_tokens,
        )
    }

    // Reply shapes written after each server's documented format (OpenAI completions object).

    /// vLLM: `usage` once per reply, summed over the n choices; `stop_reason` per choice.
    const VLLM_N3: &str = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
        "choices":[
          {"index":0,"text":" one","logprobs":null,"finish_reason":"length","stop_reason":null},
          {"index":1,"text":" two","logprobs":null,"finish_reason":"stop","stop_reason":"</OUTPUT>"},
          {"index":2,"text":" three","logprobs":null,"finish_reason":"length","stop_reason":null}],
        "usage":{"prompt_tokens":40,"total_tokens":209,"completion_tokens":169}}"#;

    /// SGLang (newer releases): the same summed usage, `matched_stop` per choice.
    const SGLANG_NEW_N2: &str = r#"{"id":"x","object":"text_completion","created":1,"model":"m",
        "choices":[
          {"index":0,"text":" a","logprobs":null,"finish_reason":"length","matched_stop":null},
          {"index":1,"text":" b","logprobs":null,"finish_reason":"stop","matched_stop":2}],
        "usage":{"prompt_tokens":12,"total_tokens":140,"completion_tokens":128}}"#;

    /// SGLang (older releases): n > 1 answered choice by choice, each with its own `usage`,
    /// the reply's usage counting the prompt once per choice.
    const SGLANG_OLD_N2: &str = r#"{"id":"x","object":"text_completion","created":1,"model":"m",
        "choices":[
          {"index":0,"text":" a","finish_reason":"length","usage":{"completion_tokens":64}},
          {"index":1,"text":" b","finish_reason":"stop","usage":{"completion_tokens":17}}],
        "usage":{"prompt_tokens":24,"total_tokens":105,"completion_tokens":81}}"#;

    /// llama-server with n = 8 (the issue's reply): 64-token rollouts, and a reply usage of
    /// 64 in all, one choice's worth.
    fn llama_server_n8() -> String {
        let choices: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"index":{i},"text":" t{i}","finish_reason":"length"}}"#))
            .collect();
        format!(
            r#"{{"id":"chatcmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo",
            "choices":[{}],
            "usage":{{"completion_tokens":64,"prompt_tokens":30,"total_tokens":94}},
            "timings":{{"prompt_n":30,"predicted_n":64,"predicted_per_second":130.0}}}}"#,
            choices.join(",")
        )
    }

    #[test]
    fn a_summed_usage_is_shared_out_by_our_counts() {
        // Our tokenizer's counts add up to 167; the server's 169 is their sum plus end tokens.
        let (tokens, source) = decide(VLLM_N3, &[64, 39, 64], true, 64);
        assert_eq!(source, TokenSource::ServerTotalShared);
        assert_eq!(
            tokens.iter().sum::<u64>(),
            169,
            "the server's total is kept"
        );
        // The two at the 64-token cap cannot take more: the end tokens go to the one that
        // stopped.
        assert_eq!(tokens, [64, 41, 64]);
        let (tokens, source) = decide(SGLANG_NEW_N2, &[64, 64], true, 64);
        assert_eq!(
            (tokens, source),
            (vec![64, 64], TokenSource::ServerTotalShared)
        );
    }

    #[test]
    fn per_choice_usage_is_taken_as_it_is() {
        let (tokens, source) = decide(SGLANG_OLD_N2, &[60, 20], true, 64);
        assert_eq!(
            (tokens, source),
            (vec![64, 17], TokenSource::ServerPerChoice)
        );
    }

    #[test]
    fn a_total_that_is_not_the_sum_gives_way_to_our_counts() {
        let ours = [64, 64, 61, 64, 64, 64, 50, 64];
        let (tokens, source) = decide(&llama_server_n8(), &ours, true, 64);
        assert_eq!((tokens, source), (ours.to_vec(), TokenSource::Counted));
        // With estimated counts too: 64 is one choice's worth of ~500, not their sum.
        let rough = [60, 58, 62, 63, 60, 64, 45, 61];
        let (tokens, source) = decide(&llama_server_n8(), &rough, false, 64);
        assert_eq!((tokens, source), (rough.to_vec(), TokenSource::Counted));
    }

    #[test]
    fn an_estimate_still_recognises_a_sum() {
        // bytes/4 estimates 20% under the truth: still nearer the sum than one choice's share.
        let (tokens, source) = decide(SGLANG_NEW_N2, &[52, 51], false, 64);
        assert_eq!(source, TokenSource::ServerTotalShared);
        assert_eq!(tokens.iter().sum::<u64>(), 128);
        // An exact tokenizer does not accept a total that far off.
        let (_, source) = decide(SGLANG_NEW_N2, &[52, 51], true, 64);
        assert_eq!(source, TokenSource::Counted);
    }

    #[test]
    fn one_choice_takes_the_reply_usage_unless_it_exceeds_the_cap() {
        let body = r#"{"choices":[{"index":0,"text":"x","finish_reason":"length"}],
            "usage":{"completion_tokens":12}}"#;
        assert_eq!(
            decide(body, &[3], false, 12),
            (vec![12], TokenSource::ServerPerChoice)
        );
        // 12 tokens cannot come back from a request capped at 8: not a count of this choice.
        assert_eq!(
            decide(body, &[3], false, 8),
            (vec![3], TokenSource::Counted)
        );
    }

    #[test]
    fn no_usage_means_our_counts_within_the_cap() {
        let body = r#"{"choices":[{"index":0,"text":"x"},{"index":1,"text":"yy"}]}"#;
        assert_eq!(
            decide(body, &[1, 2], true, 64),
            (vec![1, 2], TokenSource::Counted)
        );
        // An estimate over the request's cap is cut to it.
        assert_eq!(
            decide(body, &[70, 2], false, 64),
            (vec![64, 2], TokenSource::Counted)
        );
    }

    #[test]
    fn per_choice_usage_over_the_cap_is_not_trusted() {
        let per_choice = [Some(500), Some(10)];
        let (tokens, source) = per_choice_tokens(None, &per_choice, &[60, 10], true, 64);
        assert_eq!((tokens, source), (vec![60, 10], TokenSource::Counted));
        // Only some choices carrying a count is not a per-choice usage either.
        let (_, source) = per_choice_tokens(None, &[Some(5), None], &[5, 6], true, 64);
        assert_eq!(source, TokenSource::Counted);
    }

    #[test]
    fn empty_texts_share_the_end_tokens_evenly() {
        let (tokens, source) = per_choice_tokens(Some(3), &[None; 3], &[0, 0, 0], true, 64);
        assert_eq!(
            (tokens, source),
            (vec![1, 1, 1], TokenSource::ServerTotalShared)
        );
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, weights) in [
            (10, vec![1, 1, 1]),
            (169, vec![64, 39, 64]),
            (7, vec![0, 5, 0]),
            (0, vec![3, 4]),
        ] {
            let shares = share_out(total, &weights, 1000);
            assert_eq!(shares.iter().sum::<u64>(), total, "{weights:?}");
            assert_eq!(shares.len(), weights.len());
        }
        assert_eq!(share_out(10, &[1, 1, 1], 1000), [4, 3, 3]);
    }

    #[test]
    fn no_share_exceeds_what_one_choice_can_take() {
        // Proportional shares of 36 by estimates 12, 8, 10 would give the first 14 > 12.
        let shares = share_out(36, &[12, 8, 10], 12);
        assert_eq!(shares, [12, 12, 12]);
        let shares = share_out(30, &[12, 4, 4], 12);
        assert_eq!(shares, [12, 9, 9]);
        // A total beyond every cap fills each choice to the cap.
        assert_eq!(share_out(40, &[1, 1, 1], 12), [12, 12, 12]);
        // Through the decision: an estimated sum never yields a share over the request's cap.
        let (tokens, source) = per_choice_tokens(Some(36), &[None; 3], &[12, 8, 10], false, 12);
        assert_eq!(source, TokenSource::ServerTotalShared);
        assert!(tokens.iter().all(|&t| t <= 12), "{tokens:?}");
    }
}

//! The decoder's forward passes: `extend` (one sequence, many new tokens, causal over a cached
//! prefix) and `step` (many rows, one new token each, all sharing one cached prefix).
//!
//! KV layout: [batch, n_kv_heads, positions, head_dim]. Grouped-query attention is done by
//! folding each KV head's query heads into the matmul's row dimension instead of repeating the
//! keys, so the shared prefix is never copied per head or per row.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::ops::{rms_norm, silu, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i};

use super::attention::{decode_attention, prefill_attention, SharedKv};
use super::config::Config;
use super::weights::{Layer, Weights};

/// Per-layer (K, V).
pub(crate) type Kv = Vec<(Tensor, Tensor)>;

pub(crate) struct Model {
    pub cfg: Config,
    pub w: Weights,
    pub device: Device,
    /// Decode-step attention in one pass on CPU (see `attention.rs`); off: tensor ops.
    pub fused_attention: bool,
}

impl Model {
    /// cos/sin [n, head_dim/2] for positions start..start+n (computed per call: cheap, and no
    /// table sized by a possibly huge context length).
    fn rope_tables(&self, start: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim;
        let inv: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1f32 / self.cfg.rope_theta.powf(i as f32 / d as f32))
            .collect();
        let mut angles = Vec::with_capacity(n * inv.len());
        for p in start..start + n {
            angles.extend(inv.iter().map(|f| p as f32 * f));
        }
        let a = Tensor::from_vec(angles, (n, d / 2), &self.device)?;
        Ok((a.cos()?, a.sin()?))
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if self.cfg.rope_interleaved {
            rope_i(&x, cos, sin)
        } else {
            rope(&x, cos, sin)
        }
    }

    /// q, k, v for `n` tokens laid out [n, heads, head_dim], normalised (Qwen3), not rotated.
    fn qkv(&self, layer: &Layer, h: &Tensor, n: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.cfg;
        let mut parts = layer.qkv.forward(h)?.into_iter();
        let mut next = |heads: usize| -> Result<Tensor> {
            match parts.next() {
                Some(t) => t.reshape((n, heads, c.head_dim)),
                None => candle_core::bail!("q/k/v projection missing"),
            }
        };
        let mut q = next(c.n_heads)?;
        let mut k = next(c.n_kv_heads)?;
        let v = next(c.n_kv_heads)?;
        if let Some(w) = &layer.q_norm {
            q = rms_norm(&q.contiguous()?, w, c.rms_eps as f32)?;
        }
        if let Some(w) = &layer.k_norm {
            k = rms_norm(&k.contiguous()?, w, c.rms_eps as f32)?;
        }
        Ok((q, k, v))
    }

    fn mlp(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let h = rms_norm(x, &layer.ffn_norm, self.cfg.rms_eps as f32)?;
        let gu = layer.gate_up.forward(&h)?;
        let (g, u) = match gu.as_slice() {
            [g, u] => (silu(g)?, u),
            _ => candle_core::bail!("gate/up projection missing"),
        };
        x + layer.down.forward(&(g * u)?)?
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let h = rms_norm(x, &self.w.norm, self.cfg.rms_eps as f32)?;
        self.w.output.forward(&h)
    }

    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(tokens, &self.device)?;
        self.w.embed.index_select(&ids, 0)
    }

    /// Run `tokens` after `past` cached positions (`prefix` is empty when `past` is 0).
    /// Returns the KV of all past + new positions and the logits [vocab] after the last token.
    pub fn extend(&self, prefix: &Kv, past: usize, tokens: &[u32]) -> Result<(Kv, Tensor)> {
        let c = &self.cfg;
        let (s, hd, nkv, g) = (tokens.len(), c.head_dim, c.n_kv_heads, c.groups());
        let total = past + s;
        let scale = 1.0 / (hd as f64).sqrt();
        let (cos, sin) = self.rope_tables(past, s)?;
        // The tensor-op path's causal mask, made on first use (the CPU path masks as it goes).
        let mut mask: Option<Tensor> = None;
        let mut x = self.embed(tokens)?;
        let mut kv = Vec::with_capacity(c.n_layers);
        for (li, layer) in self.w.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let (q, k, v) = self.qkv(layer, &h, s)?;
            // [1, heads, s, hd] for the rotary kernels.
            let q = self.rope(&q.unsqueeze(0)?.transpose(1, 2)?, &cos, &sin)?;
            let k = self.rope(&k.unsqueeze(0)?.transpose(1, 2)?, &cos, &sin)?;
            let v = v.unsqueeze(0)?.transpose(1, 2)?.contiguous()?;
            let (k, v) = match prefix.get(li) {
                Some((pk, pv)) if past > 0 => (
                    Tensor::cat(&[pk, &k], 2)?.contiguous()?,
                    Tensor::cat(&[pv, &v], 2)?.contiguous()?,
                ),
                _ => (k, v),
            };
            let fused = if self.fused_attention && self.device.is_cpu() {
                prefill_attention(&q, &k, &v, past, scale as f32)?
            } else {
                None
            };
            let y = match fused {
                Some(y) => y,
                None => {
                    // Query heads of one KV head are adjacent: [nkv, g*s, hd].
                    let q = q.reshape((nkv, g * s, hd))?;
                    let att = (q.matmul(&k.squeeze(0)?.t()?)? * scale)?;
                    if mask.is_none() {
                        mask = Some(causal_mask(past, s, &self.device)?);
                    }
                    let mask = mask.as_ref().expect("made above");
                    let att = att.reshape((nkv, g, s, total))?.broadcast_add(mask)?;
                    let att = softmax_last_dim(&att)?.reshape((nkv, g * s, total))?;
                    let y = att.matmul(&v.squeeze(0)?)?; // [nkv, g*s, hd] = [heads, s, hd]
                    y.reshape((c.n_heads, s, hd))?
                        .transpose(0, 1)?
                        .reshape((s, c.n_heads * hd))?
                }
            };
            x = (x + layer.o.forward(&y)?)?;
            x = self.mlp(layer, &x)?;
            kv.push((k, v));
        }
        let logits = self.logits(&x.narrow(0, s - 1, 1)?)?.squeeze(0)?;
        Ok((kv, logits))
    }

    /// The tensor-op attention of a decoding step (GPUs, and the reference the fused CPU pass
    /// is checked against): [r, nkv, g, hd] per row.
    fn attend_segments(
        &self,
        segments: &[Segment<'_>],
        li: usize,
        q: &Tensor,
        rk: &Tensor,
        rv: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (r, hd, nkv, g) = (q.dim(0)?, c.head_dim, c.n_kv_heads, c.groups());
        let q = q.reshape((r, nkv, g, hd))?;
        // The rows' own KV is a view into longer buffers.
        let (rk, rv) = (&rk.contiguous()?, &rv.contiguous()?);
        // Scores over the rows' own tokens: [r, nkv, g, t+1].
        let own = q.matmul(&rk.t()?)?;
        let mut ys = Vec::with_capacity(segments.len());
        let mut first = 0;
        for seg in segments {
            let shared = match seg.kv.get(li) {
                Some((pk, pv)) if seg.past > 0 => Some((pk, pv)),
                _ => None,
            };
            let part = |t: &Tensor| t.narrow(0, first, seg.rows);
            ys.push(attend(
                &part(&q)?,
                &part(&own)?,
                &part(rv)?,
                shared,
                seg.past,
                scale,
            )?);
            first += seg.rows;
        }
        let y = if ys.len() == 1 {
            ys.swap_remove(0)
        } else {
            Tensor::cat(&ys, 0)?
        };
        Ok(y)
    }

    /// cos/sin [rows, 1, head_dim/2], one position per row (rows of a batch may continue
    /// prefixes of different lengths).
    fn rope_rows(&self, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim;
        let inv: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1f32 / self.cfg.rope_theta.powf(i as f32 / d as f32))
            .collect();
        let angles: Vec<f32> = positions
            .iter()
            .flat_map(|&p| inv.iter().map(move |f| p as f32 * f))
            .collect();
        let a = Tensor::from_vec(angles, (positions.len(), 1, d / 2), &self.device)?;
        Ok((a.cos()?, a.sin()?))
    }

    /// One token per row. The rows are grouped by the prefix they continue (`segments`, in
    /// row order; each prefix [1, nkv, past, hd] per layer is shared by its rows, never
    /// copied); `rows` ([r, nkv, capacity ≥ t, hd] per layer, the first t positions filled;
    /// empty when t is 0) is each row's own tokens. Returns the rows' KV with position t
    /// filled (the same buffers, written in place, while they have room) and logits [r, vocab].
    pub fn step(
        &self,
        segments: &[Segment<'_>],
        rows: &Kv,
        t: usize,
        tokens: &[u32],
    ) -> Result<(Kv, Tensor)> {
        let c = &self.cfg;
        let (r, hd) = (tokens.len(), c.head_dim);
        if segments.iter().map(|s| s.rows).sum::<usize>() != r {
            candle_core::bail!("step: segments do not cover the {r} rows");
        }
        let scale = 1.0 / (hd as f64).sqrt();
        // Rows decode in lockstep: row k of a segment sits at that prefix's length + t.
        let positions: Vec<usize> = segments
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.past + t, s.rows))
            .collect();
        let (cos, sin) = self.rope_rows(&positions)?;
        let mut x = self.embed(tokens)?;
        let mut out = Vec::with_capacity(c.n_layers);
        for (li, layer) in self.w.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let (q, k, v) = self.qkv(layer, &h, r)?;
            // One position per row: [r, heads, 1, hd] is the same memory as [r, heads, hd].
            let q = self.rope(&q.unsqueeze(2)?, &cos, &sin)?;
            let k = self.rope(&k.unsqueeze(2)?, &cos, &sin)?;
            let v = v.unsqueeze(2)?.contiguous()?;
            let old = rows.get(li).filter(|_| t > 0);
            let bk = append_position(old.map(|(k, _)| k), &k, t)?;
            let bv = append_position(old.map(|(_, v)| v), &v, t)?;
            let (rk, rv) = (bk.narrow(2, 0, t + 1)?, bv.narrow(2, 0, t + 1)?);
            let fused = if self.fused_attention && self.device.is_cpu() {
                let shared: Vec<SharedKv<'_>> = segments
                    .iter()
                    .map(|seg| match seg.kv.get(li) {
                        Some((pk, pv)) if seg.past > 0 => SharedKv {
                            k: pk,
                            v: pv,
                            past: seg.past,
                            rows: seg.rows,
                        },
                        _ => SharedKv {
                            k: &rk,
                            v: &rv,
                            past: 0,
                            rows: seg.rows,
                        },
                    })
                    .collect();
                decode_attention(&q, &rk, &rv, &shared, scale as f32)?
            } else {
                None
            };
            let y = match fused {
                Some(y) => y,
                None => self.attend_segments(segments, li, &q, &rk, &rv, scale)?,
            };
            let y = y.reshape((r, c.n_heads * hd))?;
            x = (x + layer.o.forward(&y)?)?;
            x = self.mlp(layer, &x)?;
            out.push((bk, bv));
        }
        Ok((out, self.logits(&x)?))
    }
}

/// Additive causal mask [s, past + s]: new token i sees positions 0..=past + i.
fn causal_mask(past: usize, s: usize, device: &Device) -> Result<Tensor> {
    let total = past + s;
    let values: Vec<f32> = (0..s)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(values, (s, total), device)
}

/// Positions a rows' KV buffer starts with.
const MIN_KV_CAPACITY: usize = 32;

/// Positions the rows' KV buffers hold once `new_tokens` tokens are in (see
/// [`append_position`]): the first capacity, doubled until it fits.
pub(crate) fn kv_capacity_for(new_tokens: usize) -> usize {
    let mut cap = MIN_KV_CAPACITY;
    while cap < new_tokens {
        cap *= 2;
    }
    cap
}

/// A rows' KV buffer [r, nkv, capacity, hd] holding positions 0..t (`old`; None when t is 0)
/// with position t set to `new` [r, nkv, 1, hd]. Written in place while there is room, else
/// moved to a buffer twice as long: appending costs O(1) a position instead of copying all
/// of them every step, and memory stays within twice what the rows' tokens need.
fn append_position(old: Option<&Tensor>, new: &Tensor, t: usize) -> Result<Tensor> {
    let new = new.contiguous()?;
    let (r, nkv, _, hd) = new.dims4()?;
    let buf = match old {
        Some(b) if b.dim(2)? > t => b.clone(),
        Some(b) => {
            let cap = kv_capacity_for(t + 1);
            let grown = Tensor::zeros((r, nkv, cap, hd), new.dtype(), new.device())?;
            grown.slice_set(&b.narrow(2, 0, t)?.contiguous()?, 2, 0)?;
            grown
        }
        None => Tensor::zeros((r, nkv, MIN_KV_CAPACITY, hd), new.dtype(), new.device())?,
    };
    buf.slice_set(&new, 2, t)?;
    Ok(buf)
}

/// Rows that continue one cached prefix: its KV per layer ([1, nkv, past, hd]; empty when
/// `past` is 0) and how many consecutive rows of the batch continue it.
pub(crate) struct Segment<'a> {
    pub kv: &'a Kv,
    pub past: usize,
    pub rows: usize,
}

/// Attention output [rs, nkv, g, hd] of one segment's rows: queries `q` [rs, nkv, g, hd], their
/// scores over their own tokens `own` [rs, nkv, g, t+1] with values `rv` [rs, nkv, t+1, hd],
/// and the shared prefix (K, V) [1, nkv, past, hd] when there is one. One softmax over
/// prefix + own positions; the prefix is read through one matmul for all rows' queries.
fn attend(
    q: &Tensor,
    own: &Tensor,
    rv: &Tensor,
    shared: Option<(&Tensor, &Tensor)>,
    past: usize,
    scale: f64,
) -> Result<Tensor> {
    let (rs, nkv, g, hd) = q.dims4()?;
    let own_len = own.dim(D::Minus1)?;
    let Some((pk, pv)) = shared else {
        let att = softmax_last_dim(&(own * scale)?.contiguous()?)?;
        return att.matmul(&rv.contiguous()?);
    };
    let (pk, pv) = (pk.squeeze(0)?, pv.squeeze(0)?);
    // All rows' queries against the one prefix: [nkv, rs*g, hd] x [nkv, hd, past].
    let qp = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, rs * g, hd))?;
    let sp = qp.matmul(&pk.t()?)?.reshape((nkv, rs, g, past))?;
    let scores = Tensor::cat(&[&sp.transpose(0, 1)?, own], 3)?;
    let att = softmax_last_dim(&(scores * scale)?.contiguous()?)?;
    let y = att
        .narrow(D::Minus1, past, own_len)?
        .contiguous()?
        .matmul(&rv.contiguous()?)?;
    let ap = att
        .narrow(D::Minus1, 0, past)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, rs * g, past))?;
    let yp = ap.matmul(&pv)?.reshape((nkv, rs, g, hd))?.transpose(0, 1)?;
    y + yp
}

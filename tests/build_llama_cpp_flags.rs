//! scripts/build-llama-cpp.sh chooses llama.cpp's CPU flags from /proc/cpuinfo's `flags` line
//! (no GGML_NATIVE: a native build stopped with an illegal instruction on a machine with AMX).
//! Its `--flags-for` mode prints the choice for a given flags line and builds nothing, so
//! these tests need neither cmake nor the llama.cpp sources.

use std::process::Command;

fn flags_for(cpu: &str) -> (Vec<String>, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-llama-cpp.sh");
    let out = Command::new("sh")
        .args([script, "--flags-for", cpu])
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let mut lines = text.lines();
    let flags = lines
        .next()
        .expect("a flags line")
        .split(' ')
        .map(String::from)
        .collect();
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .expect("a `key …` line")
        .to_string();
    (flags, key)
}

fn has(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f == flag)
}

#[test]
fn avx2_without_avx512_turns_avx512_off() {
    // The AMD EPYC development machine: AVX2, FMA, F16C, no AVX-512.
    let (flags, key) = flags_for("fpu sse4_2 avx f16c bmi2 avx2 fma");
    for on in ["AVX", "AVX2", "FMA", "F16C", "BMI2", "SSE42"] {
        assert!(has(&flags, &format!("-DGGML_{on}=ON")), "{on}: {flags:?}");
    }
    assert!(has(&flags, "-DGGML_NATIVE=OFF"));
    assert!(has(&flags, "-DGGML_AVX512=OFF"));
    assert!(has(&flags, "-DGGML_AVX512_VNNI=OFF"));
    assert!(has(&flags, "-DGGML_AMX_TILE=OFF"));
    assert_eq!(key, "sse42.avx.avx2.bmi2.fma.f16c");
}

#[test]
fn avx512_and_its_extensions_follow_avx512f_and_amx_stays_off() {
    let cpu = "avx avx2 fma f16c avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16";
    let (flags, key) = flags_for(cpu);
    assert!(has(&flags, "-DGGML_AVX512=ON"));
    assert!(has(&flags, "-DGGML_AVX512_VNNI=ON"));
    assert!(has(&flags, "-DGGML_AVX512_BF16=ON"));
    assert!(has(&flags, "-DGGML_AVX512_VBMI=OFF"));
    for amx in ["TILE", "INT8", "BF16"] {
        assert!(has(&flags, &format!("-DGGML_AMX_{amx}=OFF")), "{flags:?}");
    }
    assert!(key.contains("avx512") && !key.contains("amx"), "{key}");
}

#[test]
fn an_extension_without_avx512f_is_not_enough() {
    // A flag name that contains another must not match it (avx512_vnni is not avx512f).
    let (flags, _) = flags_for("avx avx512_vnni avx512vl");
    assert!(has(&flags, "-DGGML_AVX512=OFF"));
    assert!(has(&flags, "-DGGML_AVX512_VNNI=OFF"));
    assert!(has(&flags, "-DGGML_AVX2=OFF"));
    assert!(has(&flags, "-DGGML_AVX=ON"));
}

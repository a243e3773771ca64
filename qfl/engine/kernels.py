"""Fused CPU kernels for the client-stacked CNN (convolution, ReLU, 2x2 max-pooling).

Eager PyTorch spends most of a small CNN's CPU training step outside the convolutions: the
max-pooling kernels with indices, ``where``/scatter in the backward, layout copies around
them, and oneDNN's slow path for a single-input-channel convolution each take a full pass
over the largest activations. Four kernels replace them, in the layouts the stacked forward
of :mod:`qfl.engine.stacked_cnn` keeps throughout (the channel axis, all clients' channels
side by side, innermost):

- ``conv_pool_fwd`` / ``conv_pool_bwd``: block 1 (3x3 convolution + bias + ReLU + 2x2
  max-pooling) in one pass, evaluating the convolution only at the pooling windows; the
  backward forms the filters' and the bias's gradients directly;
- ``pool2_fwd`` / ``pool2_bwd``: ReLU + 2x2 max-pooling of a channels-last map.

They keep the exact semantics of ``F.max_pool2d`` after ``F.relu``: the first maximum of a
window in row-major order receives the gradient, NaN propagates. Summation orders are fixed
(per block of positions, whatever the threads), so results are deterministic.

The C++ source is compiled on first use with ``torch.utils.cpp_extension.load_inline`` for
the machine it runs on (``-march=native``; a C++ compiler and ninja are needed, the build
is cached in torch's extension folder, ``$TORCH_EXTENSIONS_DIR``, under a name that hashes
the source, the flags and the CPU). Where it cannot be built, :func:`available` returns
``False`` and the batched trainer takes its ``vmap`` path, which gives the same numbers up
to float rounding. Set ``QFL_KERNELS=0`` to disable them.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import sys
import time
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "ConvPoolReLU",
    "PoolReLU2x2",
    "available",
    "buildable",
    "keyed_keep",
    "prepare",
    "ready",
    "tune_allocator",
]

_log = logging.getLogger(__name__)

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

// The first maximum of four values in order (NaN wins, as in max_pool2d): its index.
#define QFL_ARGMAX4(A, B, C, D, M, K)                     \
  float M = (A); int K = 0;                               \
  { float v_ = (B); bool t_ = (v_ > M) || (v_ != v_);      \
    M = t_ ? v_ : M; K = t_ ? 1 : K;                      \
    v_ = (C); t_ = (v_ > M) || (v_ != v_);                 \
    M = t_ ? v_ : M; K = t_ ? 2 : K;                      \
    v_ = (D); t_ = (v_ > M) || (v_ != v_);                 \
    M = t_ ? v_ : M; K = t_ ? 3 : K; }

// The maximum of four values in order, NaN propagating (the value of QFL_ARGMAX4).
#define QFL_MAX4(A, B, C, D, M)                                     \
  float M = (A);                                                    \
  { float v_ = (B); M = ((v_ > M) || (v_ != v_)) ? v_ : M;           \
    v_ = (C); M = ((v_ > M) || (v_ != v_)) ? v_ : M;                 \
    v_ = (D); M = ((v_ > M) || (v_ != v_)) ? v_ : M; }

// ReLU that keeps NaN (as torch.relu).
#define QFL_RELU(M) (((M) > 0.f) || ((M) != (M)) ? (M) : 0.f)

// Block 1 of the stacked CNN, forward: relu(maxpool2x2(conv3x3(x) + b)) for every client,
// the convolution computed directly at the four positions of each pooling window.
// xp [C, N, Ci, H + 2, W + 2] (zero-padded input), wt [C, K, O] (K = Ci * 9 taps, tap
// (ci, dy, dx) = ci * 9 + dy * 3 + dx), b [C, O] -> out [L, C, O] (L = N (H/2) (W/2)
// pooled positions, row-major) and idx int32 [L, C, O], the window position (row-major:
// 0 1 / 2 3) of each first maximum. OT: O as a compile-time constant (0: at run time), so
// the loops over the channels become straight-line vector code; int32 indices keep them at
// 16 lanes.
template <int64_t OT>
std::vector<torch::Tensor> conv_pool_fwd_impl(torch::Tensor xp, torch::Tensor wt,
                                              torch::Tensor b) {
  const int64_t C = xp.size(0), N = xp.size(1), Ci = xp.size(2), Hp = xp.size(3),
                Wp = xp.size(4), K = wt.size(1), O = OT ? OT : wt.size(2);
  const int64_t H2 = (Hp - 2) / 2, W2 = (Wp - 2) / 2, L = N * H2 * W2;
  auto out = torch::empty({L, C, O}, xp.options());
  auto idx = torch::empty({L, C, O}, xp.options().dtype(torch::kInt32));
  const float* __restrict__ xpp = xp.data_ptr<float>();
  const float* __restrict__ wp = wt.data_ptr<float>();
  const float* __restrict__ bp = b.data_ptr<float>();
  float* __restrict__ op = out.data_ptr<float>();
  int32_t* __restrict__ ip = idx.data_ptr<int32_t>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    // With O known at compile time the four accumulators are a local array the compiler
    // keeps in vector registers.
    constexpr int64_t OA = OT > 0 ? OT : 1;
    float acc_local[4 * OA];
    std::vector<float> accbuf(OT > 0 ? 0 : 4 * O);
    float* __restrict__ acc = OT > 0 ? acc_local : accbuf.data();
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const float* __restrict__ img = xpp + (c * N + n) * Ci * Hp * Wp;
        const float* __restrict__ wc = wp + c * K * O;
        const float* __restrict__ bc = bp + c * O;
        for (int64_t i = 0; i < H2; ++i) {
          for (int64_t j = 0; j < W2; ++j) {
            for (int64_t p = 0; p < 4; ++p) {
#pragma omp simd
              for (int64_t o = 0; o < O; ++o) acc[p * O + o] = bc[o];
            }
            for (int64_t ci = 0; ci < Ci; ++ci) {
              const float* __restrict__ win = img + (ci * Hp + 2 * i) * Wp + 2 * j;
              for (int64_t dy = 0; dy < 3; ++dy) {
                for (int64_t dx = 0; dx < 3; ++dx) {
                  const float* __restrict__ wk = wc + (ci * 9 + dy * 3 + dx) * O;
                  const float s0 = win[dy * Wp + dx], s1 = win[dy * Wp + dx + 1];
                  const float s2 = win[(dy + 1) * Wp + dx], s3 = win[(dy + 1) * Wp + dx + 1];
#pragma omp simd
                  for (int64_t o = 0; o < O; ++o) {
                    acc[o] += s0 * wk[o];
                    acc[O + o] += s1 * wk[o];
                    acc[2 * O + o] += s2 * wk[o];
                    acc[3 * O + o] += s3 * wk[o];
                  }
                }
              }
            }
            const int64_t l = (n * H2 + i) * W2 + j;
            float* __restrict__ orow = op + (l * C + c) * O;
            int32_t* __restrict__ ix = ip + (l * C + c) * O;
#pragma omp simd
            for (int64_t o = 0; o < O; ++o) {
              QFL_ARGMAX4(acc[o], acc[O + o], acc[2 * O + o], acc[3 * O + o], m, k);
              orow[o] = QFL_RELU(m);
              ix[o] = k;
            }
          }
        }
      }
    }
  });
  return {out, idx};
}

// Block 1, backward: the gradient of the filters and the bias, without forming the gradient
// of the convolution's output: g, out, idx [L, C, O]; xp, as above -> gw [C, K, O], gb [C, O].
// The gradient of each pooled output reaches only its window's first maximum (idx), so
// gw[c, k, o] = sum_l v[l, o] x(c, l, idx[l, c, o], k) with v the ReLU-masked gradient and
// x(c, l, p, k) the input under tap k at window position p of pooled position l.
template <int64_t OT>
std::vector<torch::Tensor> conv_pool_bwd_impl(torch::Tensor g, torch::Tensor out,
                                              torch::Tensor idx, torch::Tensor xp) {
  const int64_t L = g.size(0), C = g.size(1), O = OT ? OT : g.size(2);
  const int64_t N = xp.size(1), Ci = xp.size(2), Hp = xp.size(3), Wp = xp.size(4), K = Ci * 9;
  const int64_t W2 = (Wp - 2) / 2, H2 = (Hp - 2) / 2, S = H2 * W2;
  const int64_t nblk = (L + 63) / 64;
  // Per block of positions, then summed: a fixed summation order whatever the threads.
  auto gw_blk = torch::zeros({nblk, C, K, O}, g.options());
  auto gb_blk = torch::zeros({nblk, C, O}, g.options());
  const float* __restrict__ gp = g.data_ptr<float>();
  const float* __restrict__ op = out.data_ptr<float>();
  const int32_t* __restrict__ ip = idx.data_ptr<int32_t>();
  const float* __restrict__ xpp = xp.data_ptr<float>();
  float* __restrict__ gwp = gw_blk.data_ptr<float>();
  float* __restrict__ gbp = gb_blk.data_ptr<float>();
  at::parallel_for(0, nblk, 1, [&](int64_t blk0, int64_t blk1) {
    std::vector<float> vbuf(O);
    std::vector<int32_t> kbuf(O);
    std::vector<float> cbuf(64 * 4 * K);  // a block's input taps [k][window position][l]
    float* __restrict__ vv = vbuf.data();
    int32_t* __restrict__ kv = kbuf.data();
    float* __restrict__ cb = cbuf.data();
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t l0 = 64 * blk, l1 = l0 + 64 < L ? l0 + 64 : L;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t l = l0; l < l1; ++l) {
          const int64_t n = l / S, i = l % S / W2, j = l % W2;
          for (int64_t ci = 0; ci < Ci; ++ci) {
            const float* __restrict__ win =
                xpp + (((c * N + n) * Ci + ci) * Hp + 2 * i) * Wp + 2 * j;
            for (int64_t t = 0; t < 9; ++t) {
              const int64_t dy = t / 3, dx = t % 3;
              float* __restrict__ dst = cb + ((ci * 9 + t) * 4) * 64 + (l - l0);
              dst[0] = win[dy * Wp + dx];
              dst[64] = win[dy * Wp + dx + 1];
              dst[128] = win[(dy + 1) * Wp + dx];
              dst[192] = win[(dy + 1) * Wp + dx + 1];
            }
          }
        }
        float* __restrict__ gwc = gwp + (blk * C + c) * K * O;
        float* __restrict__ gbc = gbp + (blk * C + c) * O;
        for (int64_t l = l0; l < l1; ++l) {
          const float* __restrict__ gr = gp + (l * C + c) * O;
          const float* __restrict__ orow = op + (l * C + c) * O;
          const int32_t* __restrict__ ix = ip + (l * C + c) * O;
#pragma omp simd
          for (int64_t o = 0; o < O; ++o) {
            const float v = orow[o] <= 0.f ? 0.f : gr[o];  // as threshold_backward: NaN passes
            vv[o] = v;
            kv[o] = ix[o];
            gbc[o] += v;
          }
          const float* __restrict__ cl = cb + (l - l0);
          for (int64_t q = 0; q < K; ++q) {
            const float* __restrict__ cq = cl + q * 4 * 64;
            const float s0 = cq[0], s1 = cq[64], s2 = cq[128], s3 = cq[192];
            float* __restrict__ accq = gwc + q * O;
#pragma omp simd
            for (int64_t o = 0; o < O; ++o) {
              const int k = kv[o];
              const float s = k == 0 ? s0 : (k == 1 ? s1 : (k == 2 ? s2 : s3));
              accq[o] += vv[o] * s;
            }
          }
        }
      }
    }
  });
  return {gw_blk.sum(0), gb_blk.sum(0)};
}

#define QFL_DISPATCH_O(O, FN, ...)                    \
  switch (O) {                                        \
    case 8: return FN<8>(__VA_ARGS__);                \
    case 16: return FN<16>(__VA_ARGS__);              \
    case 32: return FN<32>(__VA_ARGS__);              \
    default: return FN<0>(__VA_ARGS__);               \
  }

std::vector<torch::Tensor> conv_pool_fwd(torch::Tensor xp, torch::Tensor wt, torch::Tensor b) {
  QFL_DISPATCH_O(wt.size(2), conv_pool_fwd_impl, xp, wt, b)
}

std::vector<torch::Tensor> conv_pool_bwd(torch::Tensor g, torch::Tensor out, torch::Tensor idx,
                                         torch::Tensor xp) {
  QFL_DISPATCH_O(g.size(2), conv_pool_bwd_impl, g, out, idx, xp)
}

// relu(max_pool2d(x, 2)) on channels-last x [N, H, W, R] -> out [N, H/2, W/2, R] and the
// window position of each maximum, idx int32 [N, H/2, W/2, R] (row-major: 0 1 / 2 3).
std::vector<torch::Tensor> pool2_fwd(torch::Tensor x) {
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), R = x.size(3);
  const int64_t H2 = H / 2, W2 = W / 2;
  auto out = torch::empty({N, H2, W2, R}, x.options());
  auto idx = torch::empty({N, H2, W2, R}, x.options().dtype(torch::kInt32));
  const float* __restrict__ xp = x.data_ptr<float>();
  float* __restrict__ op = out.data_ptr<float>();
  int32_t* __restrict__ ip = idx.data_ptr<int32_t>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t i = 0; i < H2; ++i) {
      for (int64_t j = 0; j < W2; ++j) {
        const float* __restrict__ a = xp + ((n * H + 2 * i) * W + 2 * j) * R;
        const float* __restrict__ b = a + R;
        const float* __restrict__ c = a + W * R;
        const float* __restrict__ d = c + R;
        float* __restrict__ o = op + ((n * H2 + i) * W2 + j) * R;
        int32_t* __restrict__ ix = ip + ((n * H2 + i) * W2 + j) * R;
#pragma omp simd
        for (int64_t r = 0; r < R; ++r) {
          QFL_ARGMAX4(a[r], b[r], c[r], d[r], m, k);
          o[r] = QFL_RELU(m);
          ix[r] = k;
        }
      }
    }
  }
  });
  return {out, idx};
}

// Gradient of pool2_fwd: g, out, idx [N, H/2, W/2, R] -> gx [N, H, W, R].
torch::Tensor pool2_bwd(torch::Tensor g, torch::Tensor out, torch::Tensor idx, int64_t H,
                        int64_t W) {
  const int64_t N = g.size(0), H2 = g.size(1), W2 = g.size(2), R = g.size(3);
  auto gx = torch::empty({N, H, W, R}, g.options());
  const float* __restrict__ gp = g.data_ptr<float>();
  const float* __restrict__ op = out.data_ptr<float>();
  const int32_t* __restrict__ ip = idx.data_ptr<int32_t>();
  float* __restrict__ gxp = gx.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t i = 0; i < H2; ++i) {
      for (int64_t j = 0; j < W2; ++j) {
        const int64_t p = ((n * H + 2 * i) * W + 2 * j) * R;
        float* __restrict__ ga = gxp + p;
        float* __restrict__ gbb = ga + R;
        float* __restrict__ gc = ga + W * R;
        float* __restrict__ gd = gc + R;
        const int64_t q = ((n * H2 + i) * W2 + j) * R;
        const float* __restrict__ gr = gp + q;
        const float* __restrict__ orow = op + q;
        const int32_t* __restrict__ ix = ip + q;
#pragma omp simd
        for (int64_t r = 0; r < R; ++r) {
          const int k = ix[r];
          const float v = orow[r] <= 0.f ? 0.f : gr[r];  // as threshold_backward: NaN passes
          ga[r] = k == 0 ? v : 0.f;
          gbb[r] = k == 1 ? v : 0.f;
          gc[r] = k == 2 ? v : 0.f;
          gd[r] = k == 3 ? v : 0.f;
        }
      }
      if (W % 2) {  // the last column is outside every window
        std::memset(gxp + ((n * H + 2 * i) * W + W - 1) * R, 0, sizeof(float) * R);
        std::memset(gxp + ((n * H + 2 * i + 1) * W + W - 1) * R, 0, sizeof(float) * R);
      }
    }
    if (H % 2) {  // and so is the last row
      std::memset(gxp + ((n * H + H - 1) * W) * R, 0, sizeof(float) * W * R);
    }
  }
  });
  return gx;
}

// The keyed dropout masks of many clients (qfl.engine.random.uniform, bit for bit): for each
// key k (int64 [K], values in [0, 2^32)) and position i < n, u = (h(h(i + h(k)) ^ h(k ^ G))
// >> 8) * 2^-24 with h the lowbias32 hash; returns float32 [K, n], scale where u >= p, else
// 0 (the factor a dropout layer multiplies its input by).
static inline uint32_t qfl_hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352DU;
  x ^= x >> 15;
  x *= 0x846CA68BU;
  x ^= x >> 16;
  return x;
}

torch::Tensor keyed_keep(torch::Tensor keys, int64_t n, double p, double scale) {
  TORCH_CHECK(keys.dtype() == torch::kInt64 && keys.dim() == 1, "keys: int64 [K]");
  auto kc = keys.contiguous();
  const int64_t K = kc.size(0);
  auto out = torch::empty({K, n}, keys.options().dtype(torch::kFloat32));
  const int64_t* kp = kc.data_ptr<int64_t>();
  float* __restrict__ op = out.data_ptr<float>();
  const float pf = static_cast<float>(p), sf = static_cast<float>(scale);
  at::parallel_for(0, K * n, 4096, [&](int64_t a, int64_t b) {
    int64_t k = a / n;
    int64_t i = a - k * n;
    for (int64_t q = a; q < b;) {
      const uint32_t key = static_cast<uint32_t>(kp[k]);
      const uint32_t s1 = qfl_hash32(key), s2 = qfl_hash32(key ^ 0x9E3779B9U);
      const int64_t stop = std::min(b - q, n - i);
#pragma omp simd
      for (int64_t j = 0; j < stop; ++j) {
        const uint32_t bits = qfl_hash32(qfl_hash32(static_cast<uint32_t>(i + j) + s1) ^ s2);
        const float u = static_cast<float>(bits >> 8) * 5.9604644775390625e-08f;
        op[q + j] = u >= pf ? sf : 0.f;
      }
      q += stop;
      i = 0;
      ++k;
    }
  });
  return out;
}
"""

_FUNCTIONS = ["conv_pool_fwd", "conv_pool_bwd", "pool2_fwd", "pool2_bwd", "keyed_keep"]
_FLAGS = ["-O3", "-march=native", "-fopenmp"]


def _cpu_id() -> str:
    """The CPU model and flags (``-march=native`` builds differ between CPUs)."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + platform.processor() + "".join(lines)


def _disabled() -> bool:
    return os.environ.get("QFL_KERNELS", "1") == "0"


def _ninja_dir() -> str | None:
    """The folder holding ``ninja``: on ``PATH``, or pip's beside the interpreter (on
    ``PATH`` only in an activated environment)."""
    found = shutil.which("ninja")
    if found:
        return os.path.dirname(found)
    bindir = os.path.dirname(sys.executable)
    return bindir if shutil.which("ninja", path=bindir) else None


def buildable() -> bool:
    """Whether the kernels are built or could be built here (a C++ compiler and ninja).

    A pure check: it compiles nothing, changes no environment variable and no allocator
    setting (:func:`prepare` does those, once, when a fused trainer is built).
    """
    if _disabled():
        return False
    if ready():
        return True
    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx) is not None and _ninja_dir() is not None


@cache
def _module() -> Any:
    """The compiled extension, or ``None`` where it cannot be built or is disabled."""
    if _disabled():
        return None
    from torch.utils import cpp_extension

    bindir = _ninja_dir()
    if bindir is not None and bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
    digest = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + _cpu_id()).encode())
    name = f"qfl_cnn_kernels_{digest.hexdigest()[:12]}"
    try:
        return _load(name, cpp_extension)
    except Exception as err:  # no compiler, no ninja, a read-only cache, ...
        _log.warning("qfl CPU kernels unavailable (%s); using the vmap path", err)
        return None


COMPILE_SECONDS = 25
"""About how long the first build takes on a laptop-class CPU (said before it starts)."""


def _built(name: str, cpp_extension: Any) -> bool:
    """Whether torch's extension folder already holds the build ``name`` (loading it then
    takes a fraction of a second; compiling it, :data:`COMPILE_SECONDS`)."""
    try:
        folder = cpp_extension._get_build_directory(name, verbose=False)
    except Exception:  # a private helper of torch: if it moves, assume a build
        return False
    return any(os.path.isfile(os.path.join(folder, name + ext)) for ext in (".so", ".pyd"))


def _load(name: str, cpp_extension: Any) -> Any:
    """Load the build ``name``, compiling it first if it is not in the cache; a compile is
    announced at INFO level on this module's logger before it starts and when it ends
    (``qfl``'s command line shows these lines on stderr)."""
    fresh = not _built(name, cpp_extension)
    if fresh:
        _log.info(
            "compiling the engine's CPU kernels once (about %d s; later runs reuse the build)…",
            COMPILE_SECONDS,
        )
    start = time.perf_counter()  # wall clock: how long the build took, not simulated time
    module = cpp_extension.load_inline(
        name, [_SOURCE], functions=_FUNCTIONS, extra_cflags=_FLAGS, verbose=False
    )
    if fresh:
        _log.info("compiled the engine's CPU kernels in %.0f s", time.perf_counter() - start)
    return module


def ready() -> bool:
    """Whether the kernels are loaded in this process (never compiles)."""
    return _module.cache_info().currsize > 0 and _module() is not None


def prepare() -> bool:
    """Build (or load the cached build of) the kernels and tune the allocator for them.

    Called once, explicitly, by whatever is about to take the fused route (a batched trainer
    of the Def-FD CNN, the Def-FD learner's evaluator). Returns whether the kernels are
    ready. The build puts pip's ``ninja`` on ``PATH`` if it is not there.
    """
    if _module() is None:
        return False
    tune_allocator()
    return True


def available() -> bool:
    """Whether the fused CPU kernels are built (compiling them on the first call; prefer
    :func:`buildable` for a check and :func:`prepare` before use)."""
    return _module() is not None


@cache
def tune_allocator() -> bool:
    """Keep freed large CPU blocks in the process heap (glibc only); returns whether it did.

    glibc returns every freed block above its mmap threshold (at most 32 MB) to the system,
    so each step's large activations are page-faulted in afresh, which costs as much as the
    arithmetic on them. Raising the mmap and trim thresholds keeps those blocks for reuse
    (the process keeps its peak heap). Called by the batched trainer on CPU.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
    return ok and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1


def keyed_keep(keys: torch.Tensor, n: int, p: float, scale: float) -> torch.Tensor:
    """The factors of ``K`` keyed dropout masks of ``n`` elements each: float32 ``[K, n]``,
    ``scale`` where :func:`qfl.engine.random.uniform` of the key is ``>= p``, else 0 (the same
    numbers, bit for bit; the kernels must be loaded: :func:`ready`)."""
    return _module().keyed_keep(keys, n, p, scale)


class ConvPoolReLU(torch.autograd.Function):
    """Block 1 of the stacked CNN: ``relu(maxpool2x2(conv3x3(x, padding=1) + b))`` for every
    client, in one pass (the convolution evaluated only where the pooling looks).

    Takes ``x [C, N, Ci, H, W]``, the filters ``w [C, O, Ci, 3, 3]`` and the bias ``b [C, O]``;
    returns ``[L, C, O]`` with ``L = N (H // 2) (W // 2)`` pooled positions in row-major
    order. Differentiable in ``w`` and ``b`` (``x`` is data: no gradient flows to it).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        c, n, ci, h, wd = x.shape
        xp = F.pad(x.reshape(c * n * ci, h, wd), (1, 1, 1, 1)).view(c, n, ci, h + 2, wd + 2)
        wt = w.reshape(c, w.shape[1], -1).transpose(1, 2).contiguous()
        out, idx = _module().conv_pool_fwd(xp, wt, b.contiguous())
        ctx.save_for_backward(out, idx, xp)
        ctx.w_shape = w.shape
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor]:
        out, idx, xp = ctx.saved_tensors
        gw, gb = _module().conv_pool_bwd(g.contiguous(), out, idx, xp)
        return None, gw.transpose(1, 2).reshape(ctx.w_shape), gb


class PoolReLU2x2(torch.autograd.Function):
    """``relu(max_pool2d(x, 2))`` on a channels-last ``x [N, H, W, R]`` -> ``[N, H/2, W/2, R]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out, idx = _module().pool2_fwd(x.contiguous())
        ctx.save_for_backward(out, idx)
        ctx.hw = (x.shape[1], x.shape[2])
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        out, idx = ctx.saved_tensors
        return _module().pool2_bwd(g.contiguous(), out, idx, *ctx.hw)

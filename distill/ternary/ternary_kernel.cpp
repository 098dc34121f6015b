// CPU kernel for packed ternary linear layers: y = (W_ternary . Q8(x)) / (sx * sw).
//
// Weight layout (built by kernel.py): row n holds Kp/4 bytes, Kp = in_features
// rounded up to 128. Each 128-column block is 32 bytes; byte j of block b keeps
// in bits 2i..2i+1 the code c = w + 1 in {0, 1, 2} of column 128*b + 32*i + j.
// Four shifts and masks therefore turn 32 bytes into four 32-byte vectors of
// codes that line up with four consecutive 32-byte slices of int8 activations.
//
// No multiplies by weights: with codes c = w + 1 the dot product is
//     sum_k w_k x_k = sum_k c_k x_k - sum_k x_k,
// and sum_k c_k x_k is exactly what the unsigned-by-signed byte dot products
// compute (AVX512-VNNI / AVX-VNNI vpdpbusd, or AVX2 vpmaddubsw + vpmaddwd).
// Accumulation is in int32 and exact; the only float work is the final
// acc / (sx * sw), done with the same float32 operations as the torch
// reference, so both agree bit for bit.
//
// Activations are quantized here too (absmax per token to int8, round half to
// even), because at batch 1 the cost of extra torch ops would rival the matvec.
// Rows are split across threads with at::parallel_for; up to four tokens share
// one pass over a row, so small batches decode each weight byte once.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kBlock = 128;  // columns per 32-byte block

// Quantize one token: xq[0..Kp) (zero padded), returns sx, writes sum of xq.
float quantize_token(const float* x, int64_t K, int64_t Kp, int8_t* xq, int32_t* sum_out) {
  float amax = 0.f;
  int64_t k = 0;
#if defined(__AVX2__)
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + k), absmask));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) amax = std::max(amax, v);
#endif
  for (; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  const float sx = 127.0f / std::max(amax, 1e-5f);

  int32_t sum = 0;
  k = 0;
#if defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(sx);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i vsum = _mm256_setzero_si256();
  for (; k + 32 <= K; k += 32) {
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * i), vs),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[i] = _mm256_cvtps_epi32(v);
      vsum = _mm256_add_epi32(vsum, q[i]);
    }
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + k), _mm256_permutevar8x32_epi32(p, order));
  }
  alignas(32) int32_t sums[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(sums), vsum);
  for (int32_t v : sums) sum += v;
#endif
  for (; k < K; ++k) {
    float v = std::nearbyint(x[k] * sx);
    v = std::min(127.0f, std::max(-128.0f, v));
    xq[k] = static_cast<int8_t>(v);
    sum += static_cast<int32_t>(v);
  }
  std::fill(xq + K, xq + Kp, int8_t{0});
  *sum_out = sum;
  return sx;
}

// quantize_token for B rows of x (K wide) in parallel: xq rows ld apart (zero padded), scales, sums.
void quantize_all(const float* x, int64_t B, int64_t K, int64_t ld, int8_t* xq, float* sx, int32_t* sums) {
  at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) sx[b] = quantize_token(x + b * K, K, ld, xq + b * ld, &sums[b]);
  });
}

// The float32 contiguous form of a kernel op's input x, which may come in any floating dtype and layout;
// x itself on the common float32 contiguous path, without even a no-op dispatcher call.
at::Tensor float_input(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.is_floating_point() && x.device().is_cpu(), "x must be a floating-point CPU tensor");
  at::Tensor out = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
  return out.is_contiguous() ? out : out.contiguous();
}

#if defined(__AVX2__)
inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}
#endif

// sum_k c_k * x_k for T tokens (x rows Kp apart) over one packed row.
template <int T>
void row_dot(const uint8_t* w, const int8_t* xq, int64_t Kp, int32_t* out) {
  const int64_t nblocks = Kp / kBlock;
#if defined(__AVX2__)
  const __m256i m3 = _mm256_set1_epi8(3);
#if !(defined(__AVX512VNNI__) && defined(__AVX512VL__)) && !defined(__AVXVNNI__)
  const __m256i ones = _mm256_set1_epi16(1);
#endif
  // Four accumulators per token break the dependency chain: vpdpbusd has a
  // latency of several cycles but a throughput of one or two per cycle.
  __m256i acc[T][4];
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < 4; ++i) acc[t][i] = _mm256_setzero_si256();
  for (int64_t b = 0; b < nblocks; ++b) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * b));
    const __m256i c[4] = {_mm256_and_si256(v, m3), _mm256_and_si256(_mm256_srli_epi16(v, 2), m3),
                          _mm256_and_si256(_mm256_srli_epi16(v, 4), m3),
                          _mm256_and_si256(_mm256_srli_epi16(v, 6), m3)};
    for (int t = 0; t < T; ++t) {
      const int8_t* xb = xq + t * Kp + kBlock * b;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      for (int i = 0; i < 4; ++i)
        acc[t][i] = _mm256_dpbusd_epi32(acc[t][i], c[i],
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32 * i)));
#elif defined(__AVXVNNI__)
      for (int i = 0; i < 4; ++i)
        acc[t][i] = _mm256_dpbusd_avx_epi32(acc[t][i], c[i],
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32 * i)));
#else
      // |c*x| <= 2*128, four pair-sums of two stay far inside int16.
      __m256i s = _mm256_maddubs_epi16(c[0], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb)));
      for (int i = 1; i < 4; ++i)
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c[i], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32 * i))));
      acc[t][b & 3] = _mm256_add_epi32(acc[t][b & 3], _mm256_madd_epi16(s, ones));
#endif
    }
  }
  for (int t = 0; t < T; ++t)
    out[t] = hsum(_mm256_add_epi32(_mm256_add_epi32(acc[t][0], acc[t][1]), _mm256_add_epi32(acc[t][2], acc[t][3])));
#else
  for (int t = 0; t < T; ++t) {
    int32_t s = 0;
    const int8_t* xt = xq + t * Kp;
    for (int64_t b = 0; b < nblocks; ++b)
      for (int64_t j = 0; j < 32; ++j) {
        const uint8_t byte = w[32 * b + j];
        for (int i = 0; i < 4; ++i) s += ((byte >> (2 * i)) & 3) * xt[kBlock * b + 32 * i + j];
      }
    out[t] = s;
  }
#endif
}

using RowDot = void (*)(const uint8_t*, const int8_t*, int64_t, int32_t*);
constexpr RowDot kRowDot[4] = {row_dot<1>, row_dot<2>, row_dot<3>, row_dot<4>};

}  // namespace

// x: (..., K) of any float dtype; packed: (N, Kp/4) uint8; wscale: (N,) float32 with W = codes / wscale.
// Returns (..., N) in x's dtype. Taking any shape and dtype here spares the
// caller's Python the reshapes and casts, which at batch 1 cost as much as the matvec.
at::Tensor ternary_linear(const at::Tensor& x_in, const at::Tensor& packed, const at::Tensor& wscale) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == at::kByte && packed.is_contiguous(),
              "packed must be a contiguous 2-D uint8 tensor");
  TORCH_CHECK(wscale.dim() == 1 && wscale.scalar_type() == at::kFloat && wscale.is_contiguous() &&
                  wscale.size(0) == packed.size(0),
              "wscale must be a contiguous float32 vector with one entry per output row");
  const at::Tensor x = float_input(x_in);
  const int64_t K = x.size(-1), B = K ? x.numel() / K : 0, N = packed.size(0), Kp = packed.size(1) * 4;
  TORCH_CHECK(Kp % kBlock == 0 && K <= Kp && Kp - K < kBlock, "packed width ", Kp,
              " does not fit in_features ", K);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;

  std::vector<int8_t> xq(B * Kp);
  std::vector<int32_t> xsum(B);
  std::vector<float> sx(B);
  const float* xp = x.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) sx[b] = quantize_token(xp + b * K, K, Kp, xq.data() + b * Kp, &xsum[b]);

  auto y = at::empty(out_shape, x.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  const float* sw = wscale.data_ptr<float>();
  const int64_t row_bytes = Kp / 4;
  // A thread gets at least ~128 KiB of packed weights (~10 us of work at batch 1): a fork/join
  // costs microseconds even on an idle machine, and on a busy one a thread that is not scheduled
  // stalls the whole call, so the small SmolLM2 matrices (q, o at 92 KiB) stay on one thread.
  const int64_t grain = std::max<int64_t>(1, 131072 / (row_bytes * std::min<int64_t>(B, 4)));
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    int32_t acc[4];
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t b0 = 0; b0 < B; b0 += 4) {
        const int64_t T = std::min<int64_t>(4, B - b0);
        kRowDot[T - 1](wp + n * row_bytes, xq.data() + b0 * Kp, Kp, acc);
        for (int64_t t = 0; t < T; ++t)
          yp[(b0 + t) * N + n] = static_cast<float>(acc[t] - xsum[b0 + t]) / (sx[b0 + t] * sw[n]);
      }
    }
  });
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

// The int8 GEMM path's two ends (kernel.int8_matmul), one pass each instead of torch's chain of
// elementwise ops, which at prefill cost about as much as the GEMM between them.
//
// quantize_rows: x (..., K) float -> Q8(x) as int8 (B, K) and sx (B, 1), the numbers of quantize_token.
std::tuple<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& x_in) {
  const at::Tensor x = float_input(x_in);
  const int64_t K = x.size(-1), B = K ? x.numel() / K : 0;
  auto xq = at::empty({B, K}, x.options().dtype(at::kChar));
  auto sx = at::empty({B, 1}, x.options());
  std::vector<int32_t> unused(B);
  quantize_all(x.data_ptr<float>(), B, K, K, xq.data_ptr<int8_t>(), sx.data_ptr<float>(), unused.data());
  return {xq, sx};
}

// scale_rows: y (B, N) = acc / (sx * wscale) in float32, the same two operations as the torch reference;
// acc holds the integer sums as int32 (int8 GEMM) or as their exact float32 values (fp32 GEMM).
template <typename Acc>
void scale_into(const Acc* ap, const float* sp, const float* wp, float* yp, int64_t B, int64_t N) {
  at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float s = sp[b];
      const Acc* a = ap + b * N;
      float* o = yp + b * N;
      for (int64_t n = 0; n < N; ++n) o[n] = static_cast<float>(a[n]) / (s * wp[n]);
    }
  });
}

at::Tensor scale_rows(const at::Tensor& acc, const at::Tensor& sx, const at::Tensor& wscale) {
  TORCH_CHECK(acc.dim() == 2 && (acc.scalar_type() == at::kInt || acc.scalar_type() == at::kFloat) &&
                  acc.is_contiguous(),
              "acc must be a contiguous 2-D int32 or float32 tensor");
  const int64_t B = acc.size(0), N = acc.size(1);
  TORCH_CHECK(sx.scalar_type() == at::kFloat && sx.is_contiguous() && sx.numel() == B,
              "sx must hold one float32 scale per row");
  TORCH_CHECK(wscale.scalar_type() == at::kFloat && wscale.is_contiguous() && wscale.numel() == N,
              "wscale must hold one float32 scale per output column");
  auto y = at::empty({B, N}, acc.options().dtype(at::kFloat));
  if (acc.scalar_type() == at::kInt)
    scale_into(acc.data_ptr<int32_t>(), sx.data_ptr<float>(), wscale.data_ptr<float>(), y.data_ptr<float>(), B, N);
  else
    scale_into(acc.data_ptr<float>(), sx.data_ptr<float>(), wscale.data_ptr<float>(), y.data_ptr<float>(), B, N);
  return y;
}

// ternary_gemm: the prefill path, y (..., N) = (W_ternary . Q8(x)) / (sx * sw) for many rows at once.
//
// Weight layout (kernel.gemm_layout): codes c = w + 1 as bytes, in blocks of 8 output columns; block
// nb holds K4 = ceil(K / 4) groups of 32 bytes, group s holding columns 8nb..8nb+7, each with its 4
// codes for inputs 4s..4s+3. One broadcast of a row's 4 activation bytes against one group is then a
// byte dot product of 4 pairs per column: 8 columns at once (vpdpbusd, or vpmaddubsw + vpmaddwd).
// A micro-tile of MR rows by NV blocks keeps its sums in registers while it walks K; the rows of a
// chunk reuse each panel of codes from the cache. Without VNNI, vpmaddubsw's int16 pair sums
// (|c x| <= 2 * 128, a pair <= 512) are summed in int16 for at most kChunk = 63 steps
// (63 * 512 < 2^15) before they are widened to int32, so nothing saturates and the sums stay exact.
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
constexpr int kMR = 4;  // rows per micro-tile: 12 sums, 3 code vectors, 1 broadcast = 16 ymm registers
constexpr int64_t kChunk = INT64_MAX;  // int32 sums: nothing to widen
#else
constexpr int kMR = 3;  // and 9 int16 sums, 3 code vectors, a broadcast, a product: 4 rows would spill
constexpr int64_t kChunk = 63;
#endif
constexpr int kNV = 3;  // 8-column blocks per micro-tile

#if defined(__AVX2__)
// sum + the byte dot products of 8 columns' codes with one row's 4 activations: int32 lanes with VNNI,
// else vpmaddubsw's int16 pair sums.
inline __m256i add_dot4(__m256i sum, __m256i codes, __m256i four) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(sum, codes, four);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(sum, codes, four);
#else
  return _mm256_add_epi16(sum, _mm256_maddubs_epi16(codes, four));
#endif
}

// The sums of one chunk of steps as int32 lanes (one per column).
inline __m256i widen(__m256i part) {
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
  return part;
#else
  return _mm256_madd_epi16(part, _mm256_set1_epi16(1));
#endif
}
#endif

// The end of the chunk of steps that starts at s0.
inline int64_t s1_of(int64_t s0, int64_t K4) { return K4 - s0 < kChunk ? K4 : s0 + kChunk; }

template <int MR, int NV>
void gemm_tile(const int8_t* x, int64_t ldx, const uint8_t* b, int64_t K4, const int32_t* xsum,
               const float* sx, const float* sw, int64_t n0, int64_t N, float* y, int64_t ldy) {
  int32_t out[MR][NV * 8];
#if defined(__AVX2__)
  __m256i acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_setzero_si256();
  for (int64_t s0 = 0; s0 < K4; s0 = s1_of(s0, K4)) {
    const int64_t s1 = s1_of(s0, K4);
    __m256i part[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) part[m][v] = _mm256_setzero_si256();
    for (int64_t s = s0; s < s1; ++s) {
      __m256i bv[NV];
      for (int v = 0; v < NV; ++v)
        bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (v * K4 + s) * 32));
      for (int m = 0; m < MR; ++m) {
        int32_t four;
        std::memcpy(&four, x + m * ldx + 4 * s, 4);
        const __m256i a = _mm256_set1_epi32(four);
        for (int v = 0; v < NV; ++v) part[m][v] = add_dot4(part[m][v], bv[v], a);
      }
    }
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_add_epi32(acc[m][v], widen(part[m][v]));
  }
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[m] + 8 * v), acc[m][v]);
#else
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v)
      for (int j = 0; j < 8; ++j) {
        int32_t sum = 0;
        for (int64_t s = 0; s < K4; ++s)
          for (int i = 0; i < 4; ++i) sum += b[(v * K4 + s) * 32 + 4 * j + i] * x[m * ldx + 4 * s + i];
        out[m][8 * v + j] = sum;
      }
#endif
  const int64_t width = std::min<int64_t>(NV * 8, N - n0);
  for (int m = 0; m < MR; ++m)
    for (int64_t j = 0; j < width; ++j)
      y[m * ldy + n0 + j] = static_cast<float>(out[m][j] - xsum[m]) / (sx[m] * sw[n0 + j]);
}

template <int MR>
void gemm_rows(const int8_t* x, int64_t ldx, const uint8_t* b, int64_t K4, int64_t nb0, int64_t nb1,
               const int32_t* xsum, const float* sx, const float* sw, int64_t N, float* y) {
  int64_t nb = nb0;
  for (; nb + kNV <= nb1; nb += kNV)
    gemm_tile<MR, kNV>(x, ldx, b + nb * K4 * 32, K4, xsum, sx, sw, nb * 8, N, y, N);
  if (nb1 - nb == 2) gemm_tile<MR, 2>(x, ldx, b + nb * K4 * 32, K4, xsum, sx, sw, nb * 8, N, y, N);
  if (nb1 - nb == 1) gemm_tile<MR, 1>(x, ldx, b + nb * K4 * 32, K4, xsum, sx, sw, nb * 8, N, y, N);
}

using GemmRows = void (*)(const int8_t*, int64_t, const uint8_t*, int64_t, int64_t, int64_t, const int32_t*,
                          const float*, const float*, int64_t, float*);
constexpr GemmRows kGemmRows[4] = {gemm_rows<1>, gemm_rows<2>, gemm_rows<3>, gemm_rows<4>};  // by rows left, <= kMR

// x: (..., K) float; blocks: (ceil(N / 8), ceil(K / 4), 32) uint8 (the layout above); wscale: (N,) float32.
at::Tensor ternary_gemm(const at::Tensor& x_in, const at::Tensor& blocks, const at::Tensor& wscale) {
  TORCH_CHECK(blocks.dim() == 3 && blocks.scalar_type() == at::kByte && blocks.is_contiguous() &&
                  blocks.size(2) == 32,
              "blocks must be a contiguous (N/8, K/4, 32) uint8 tensor");
  TORCH_CHECK(wscale.dim() == 1 && wscale.scalar_type() == at::kFloat && wscale.is_contiguous(),
              "wscale must be a contiguous float32 vector");
  const at::Tensor x = float_input(x_in);
  const int64_t K = x.size(-1), B = K ? x.numel() / K : 0, N = wscale.size(0), K4 = blocks.size(1);
  TORCH_CHECK(K4 == (K + 3) / 4 && blocks.size(0) == (N + 7) / 8, "blocks of shape ", blocks.sizes(),
              " do not fit in_features ", K, " and out_features ", N);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;
  auto y = at::empty(out_shape, x.options());
  const int64_t ldx = 4 * K4;
  std::vector<int8_t> xq(B * ldx);
  std::vector<int32_t> xsum(B);
  std::vector<float> sx(B);
  quantize_all(x.data_ptr<float>(), B, K, ldx, xq.data(), sx.data(), xsum.data());
  // Work items: a chunk of rows (their activations stay in L2) times a range of column blocks (their
  // codes stay in L1/L2 while every micro-tile of the chunk walks them).
  constexpr int64_t kRowsPerChunk = 64;
  const int64_t n_blocks = blocks.size(0), cols_per_item = kNV * std::max<int64_t>(1, 16384 / (K4 * 32 * kNV));
  const int64_t row_chunks = (B + kRowsPerChunk - 1) / kRowsPerChunk;
  const int64_t col_items = (n_blocks + cols_per_item - 1) / cols_per_item;
  const uint8_t* bp = blocks.data_ptr<uint8_t>();
  const float* sw = wscale.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, row_chunks * col_items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r0 = (item / col_items) * kRowsPerChunk, r1 = std::min(B, r0 + kRowsPerChunk);
      const int64_t nb0 = (item % col_items) * cols_per_item, nb1 = std::min(n_blocks, nb0 + cols_per_item);
      for (int64_t r = r0; r < r1; r += kMR) {
        const int64_t rows = std::min<int64_t>(kMR, r1 - r);
        kGemmRows[rows - 1](xq.data() + r * ldx, ldx, bp, K4, nb0, nb1, xsum.data() + r, sx.data() + r, sw, N,
                            yp + r * N);
      }
    }
  });
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

std::string simd_path() {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return "avx512-vnni";
#elif defined(__AVXVNNI__)
  return "avx-vnni";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}

// Registered as torch.ops.oel_ternary.*: torch/library.h compiles in a fraction of the
// time torch/extension.h (pybind11 and all of libtorch's API) takes.
TORCH_LIBRARY(oel_ternary, m) {
  m.def("ternary_linear(Tensor x, Tensor packed, Tensor wscale) -> Tensor", &ternary_linear);
  m.def("quantize_rows(Tensor x) -> (Tensor, Tensor)", &quantize_rows);
  m.def("scale_rows(Tensor acc, Tensor sx, Tensor wscale) -> Tensor", &scale_rows);
  m.def("ternary_gemm(Tensor x, Tensor blocks, Tensor wscale) -> Tensor", &ternary_gemm);
  m.def("simd_path() -> str", &simd_path);
}

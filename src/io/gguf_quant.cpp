// ggml block encodings (see gguf.h for the layouts). Written from the format definitions:
// each quantizer picks per-block scales (and mins) by a small search that minimises the squared
// error of the dequantized block, then packs the integers exactly as ggml's dequantizers unpack
// them. Bit-exactness with llama.cpp's own quantizer is not a goal; its dequantizer reading our
// blocks is.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tune/core/dtype.h"
#include "tune/core/error.h"
#include "tune/core/parallel.h"
#include "tune/io/gguf.h"

namespace tune::io {

namespace {

constexpr int64_t kQK = 32;    // Q8_0 / Q5_0 block
constexpr int64_t kQKK = 256;  // k-quant super-block

constexpr int64_t kQ8Bytes = 2 + 32;
constexpr int64_t kQ5Bytes = 2 + 4 + 16;
constexpr int64_t kQ5_1Bytes = 2 + 2 + 4 + 16;
constexpr int64_t kQ4KBytes = 2 + 2 + 12 + 128;
constexpr int64_t kQ5KBytes = 2 + 2 + 12 + 32 + 128;
constexpr int64_t kQ6KBytes = 128 + 64 + 16 + 2;

int nearest_int(float x) {
  return static_cast<int>(std::lrintf(x));
}

void put_f16(uint8_t* p, float v) {
  uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}
float get_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// ---- Q8_0: symmetric, d = amax / 127 ----
void quantize_q8_0_block(const float* x, uint8_t* out) {
  float amax = 0;
  for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
  float d = amax / 127.0f;
  put_f16(out, d);
  // Scale by the stored (f16-rounded) d so the reader's product is the closest.
  float ds = get_f16(out);
  float id = ds != 0 ? 1.0f / ds : 0.0f;
  auto* q = reinterpret_cast<int8_t*>(out + 2);
  for (int i = 0; i < kQK; ++i)
    q[i] = static_cast<int8_t>(std::clamp(nearest_int(x[i] * id), -127, 127));
}
void dequantize_q8_0_block(const uint8_t* in, float* y) {
  float d = get_f16(in);
  const auto* q = reinterpret_cast<const int8_t*>(in + 2);
  for (int i = 0; i < kQK; ++i) y[i] = d * q[i];
}

// ---- Q5_0: symmetric 5-bit, x = d * (q - 16), d = max / -16 (max: the value of largest |x|) ----
void quantize_q5_0_block(const float* x, uint8_t* out) {
  float amax = 0, max = 0;
  for (int i = 0; i < kQK; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  float d = max / -16.0f;
  put_f16(out, d);
  float ds = get_f16(out);
  float id = ds != 0 ? 1.0f / ds : 0.0f;
  uint32_t qh = 0;
  uint8_t* qs = out + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    int q0 = std::clamp(nearest_int(x[j] * id) + 16, 0, 31);
    int q1 = std::clamp(nearest_int(x[j + 16] * id) + 16, 0, 31);
    qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
    qh |= static_cast<uint32_t>(q0 >> 4) << j;
    qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
  }
  std::memcpy(out + 2, &qh, 4);
}
void dequantize_q5_0_block(const uint8_t* in, float* y) {
  float d = get_f16(in);
  uint32_t qh;
  std::memcpy(&qh, in + 2, 4);
  const uint8_t* qs = in + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    int q0 = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * (q0 - 16);
    y[j + 16] = d * (q1 - 16);
  }
}

// ---- Q5_1: asymmetric 5-bit, x = d * q + m, d = (max - min) / 31, m = min ----
void quantize_q5_1_block(const float* x, uint8_t* out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < kQK; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  put_f16(out, (hi - lo) / 31.0f);
  put_f16(out + 2, lo);
  float ds = get_f16(out), m = get_f16(out + 2);
  float id = ds != 0 ? 1.0f / ds : 0.0f;
  uint32_t qh = 0;
  uint8_t* qs = out + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    int q0 = std::clamp(nearest_int((x[j] - m) * id), 0, 31);
    int q1 = std::clamp(nearest_int((x[j + 16] - m) * id), 0, 31);
    qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
    qh |= static_cast<uint32_t>(q0 >> 4) << j;
    qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
  }
  std::memcpy(out + 4, &qh, 4);
}
void dequantize_q5_1_block(const uint8_t* in, float* y) {
  float d = get_f16(in), m = get_f16(in + 2);
  uint32_t qh;
  std::memcpy(&qh, in + 4, 4);
  const uint8_t* qs = in + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    int q0 = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * q0 + m;
    y[j + 16] = d * q1 + m;
  }
}

// Asymmetric fit of n values to x ~ scale * L - min with L in [0, nmax], min >= 0 (the block's
// minimum clipped at 0, as ggml requires). Tries a grid of inverse scales around the plain
// (max - min) / nmax and refines each by least squares on its integer assignment; keeps the
// one with the smallest weighted squared error. Returns scale, writes min and L.
float fit_scale_min(const float* x, const float* w, int n, int nmax, float* min_out, uint8_t* L) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (lo > 0) lo = 0;
  if (hi <= lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *min_out = -lo;
    return 0.0f;
  }
  auto error_of = [&](float scale, float mn) {
    float e = 0;
    for (int i = 0; i < n; ++i) {
      float d = scale * L[i] + mn - x[i];
      e += w[i] * d * d;
    }
    return e;
  };
  float best_scale = (hi - lo) / nmax, best_min = lo;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int((x[i] - lo) / best_scale), 0, nmax));
  }
  float best_err = error_of(best_scale, best_min);
  uint8_t Laux[32];  // n <= 32: one sub-block
  for (int step = -10; step <= 10; ++step) {
    float iscale = (0.1f * step + nmax) / (hi - lo);
    float sum_w = 0, sum_l = 0, sum_l2 = 0, sum_x = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      sum_w += w[i];
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_x += w[i] * x[i];
      sum_xl += w[i] * l * x[i];
    }
    // Least squares for x ~ scale * l + m (m = -min).
    float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (m > 0) {  // the offset must stay <= 0: refit the scale with m = 0
      m = 0;
      scale = sum_l2 > 0 ? sum_xl / sum_l2 : 0;
    }
    if (scale <= 0) continue;
    float e = 0;
    for (int i = 0; i < n; ++i) {
      float d = scale * Laux[i] + m - x[i];
      e += w[i] * d * d;
    }
    if (e < best_err) {
      best_err = e;
      best_scale = scale;
      best_min = m;
      std::copy(Laux, Laux + n, L);
    }
  }
  *min_out = -best_min;
  return best_scale;
}

// Symmetric fit x ~ scale * L, L in [-nmax, nmax - 1]: a grid of inverse scales around
// -nmax / max (max: the value of largest |x|), each refined by least squares.
float fit_scale_symmetric(const float* x, int n, int nmax) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0.0f;
  float best_scale = 0, best_err = INFINITY;
  for (int step = -9; step <= 9; ++step) {
    float iscale = -(nmax + 0.1f * step) / max;
    float sum_xl = 0, sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      sum_xl += x[i] * l;
      sum_l2 += static_cast<float>(l * l);
    }
    if (sum_l2 <= 0) continue;
    float scale = sum_xl / sum_l2;
    float e = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::clamp(nearest_int(x[i] / scale), -nmax, nmax - 1);
      float d = scale * l - x[i];
      e += d * d;
    }
    if (e < best_err) {
      best_err = e;
      best_scale = scale;
    }
  }
  return best_scale;
}

// ---- Q4_K ----
// scales[12] packs eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3 keep scale and min in
// the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep their low 4 bits in bytes 8-11 (scale
// low nibble, min high nibble) and their high 2 bits in the top bits of bytes 0-3 (scale) and
// 4-7 (min).
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K (nmax 15) and Q5_K (nmax 31) share the scales/mins and their packing; they differ in how
// the quants are stored (Q5_K adds a fifth bit in qh).
void quantize_k_scales_mins(const float* x, uint8_t* out, int nmax, uint8_t* L) {
  float scales[8], mins[8], w[32];
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    // Weight large values more (they matter more to a dot product), as ggml does.
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(xs, w, 32, nmax, &mins[j], L + 32 * j);
  }
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t* sc = out + 4;
  std::memset(sc, 0, 12);
  for (int j = 0; j < 8; ++j) {
    auto ls = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
    auto lm = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    if (j < 4) {
      sc[j] = ls;
      sc[j + 4] = lm;
    } else {
      sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  put_f16(out, max_scale / 63.0f);
  put_f16(out + 2, max_min / 63.0f);
  // Requantize against the scales as stored (6-bit, f16 super-scales).
  float d = get_f16(out), dmin = get_f16(out + 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, sc, &s, &m);
    float ds = d * s;
    if (ds == 0) {
      std::memset(L + 32 * j, 0, 32);
      continue;
    }
    float dm = dmin * m;
    for (int l = 0; l < 32; ++l) {
      L[32 * j + l] =
          static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / ds), 0, nmax));
    }
  }
}

void quantize_q4_k_block(const float* x, uint8_t* out) {
  uint8_t L[kQKK];
  quantize_k_scales_mins(x, out, 15, L);
  uint8_t* qs = out + 16;
  for (int j = 0; j < kQKK; j += 64) {
    for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    qs += 32;
  }
}

// Q5_K: d, dmin, scales[12] as Q4_K, then qh[32] (bit 2k / 2k+1 of qh[l]: the fifth bit of value
// l / l + 32 of the k-th 64-value group), then the low nibbles qs[128] as Q4_K.
void quantize_q5_k_block(const float* x, uint8_t* out) {
  uint8_t L[kQKK];
  quantize_k_scales_mins(x, out, 31, L);
  uint8_t* qh = out + 16;
  uint8_t* ql = out + 48;
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQKK; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

void dequantize_q4_k_block(const uint8_t* in, float* y) {
  float d = get_f16(in), dmin = get_f16(in + 2);
  const uint8_t* sc = in + 4;
  const uint8_t* q = in + 16;
  int is = 0;
  for (int j = 0; j < kQKK; j += 64) {
    uint8_t s, m;
    get_scale_min_k4(is, sc, &s, &m);
    float d1 = d * s, m1 = dmin * m;
    get_scale_min_k4(is + 1, sc, &s, &m);
    float d2 = d * s, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void dequantize_q5_k_block(const uint8_t* in, float* y) {
  float d = get_f16(in), dmin = get_f16(in + 2);
  const uint8_t* sc = in + 4;
  const uint8_t* qh = in + 16;
  const uint8_t* ql = in + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQKK; j += 64) {
    uint8_t s, m;
    get_scale_min_k4(is, sc, &s, &m);
    float d1 = d * s, m1 = dmin * m;
    get_scale_min_k4(is + 1, sc, &s, &m);
    float d2 = d * s, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

// ---- Q6_K ----
void quantize_q6_k_block(const float* x, uint8_t* out) {
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  auto* scales = reinterpret_cast<int8_t*>(out + 192);
  float sub_scale[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    sub_scale[ib] = fit_scale_symmetric(x + 16 * ib, 16, 32);
    if (std::fabs(sub_scale[ib]) > max_abs_scale) {
      max_abs_scale = std::fabs(sub_scale[ib]);
      max_scale = sub_scale[ib];
    }
  }
  uint8_t L[kQKK];
  if (max_abs_scale == 0) {
    std::memset(out, 0, kQ6KBytes);
    return;
  }
  // 8-bit sub-scales in [-128, 127] against one f16 super-scale d = max_scale / -128.
  float iscale = -128.0f / max_scale;
  put_f16(out + 208, 1.0f / iscale);
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * sub_scale[ib])));
  }
  float d = get_f16(out + 208);
  for (int ib = 0; ib < 16; ++ib) {
    float ds = d * scales[ib];
    for (int l = 0; l < 16; ++l) {
      int q = ds != 0 ? std::clamp(nearest_int(x[16 * ib + l] / ds), -32, 31) : 0;
      L[16 * ib + l] = static_cast<uint8_t>(q + 32);
    }
  }
  for (int j = 0; j < kQKK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
      uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                   ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

void dequantize_q6_k_block(const uint8_t* in, float* y) {
  const uint8_t* ql = in;
  const uint8_t* qh = in + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(in + 192);
  float d = get_f16(in + 208);
  for (int n = 0; n < kQKK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

using QuantizeBlock = void (*)(const float*, uint8_t*);
using DequantizeBlock = void (*)(const uint8_t*, float*);

QuantizeBlock quantizer(GgmlType t) {
  switch (t) {
    case GgmlType::q8_0:
      return quantize_q8_0_block;
    case GgmlType::q5_0:
      return quantize_q5_0_block;
    case GgmlType::q5_1:
      return quantize_q5_1_block;
    case GgmlType::q5_k:
      return quantize_q5_k_block;
    case GgmlType::q4_k:
      return quantize_q4_k_block;
    case GgmlType::q6_k:
      return quantize_q6_k_block;
    default:
      return nullptr;
  }
}
DequantizeBlock dequantizer(GgmlType t) {
  switch (t) {
    case GgmlType::q8_0:
      return dequantize_q8_0_block;
    case GgmlType::q5_0:
      return dequantize_q5_0_block;
    case GgmlType::q5_1:
      return dequantize_q5_1_block;
    case GgmlType::q5_k:
      return dequantize_q5_k_block;
    case GgmlType::q4_k:
      return dequantize_q4_k_block;
    case GgmlType::q6_k:
      return dequantize_q6_k_block;
    default:
      return nullptr;
  }
}

}  // namespace

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::f32:
      return "F32";
    case GgmlType::f16:
      return "F16";
    case GgmlType::bf16:
      return "BF16";
    case GgmlType::q8_0:
      return "Q8_0";
    case GgmlType::q5_0:
      return "Q5_0";
    case GgmlType::q5_1:
      return "Q5_1";
    case GgmlType::q5_k:
      return "Q5_K";
    case GgmlType::q4_k:
      return "Q4_K";
    case GgmlType::q6_k:
      return "Q6_K";
  }
  return "?";
}

int64_t ggml_block_size(GgmlType t) {
  switch (t) {
    case GgmlType::f32:
    case GgmlType::f16:
    case GgmlType::bf16:
      return 1;
    case GgmlType::q8_0:
    case GgmlType::q5_0:
    case GgmlType::q5_1:
      return kQK;
    case GgmlType::q4_k:
    case GgmlType::q5_k:
    case GgmlType::q6_k:
      return kQKK;
  }
  return 1;
}

int64_t ggml_block_bytes(GgmlType t) {
  switch (t) {
    case GgmlType::f32:
      return 4;
    case GgmlType::f16:
    case GgmlType::bf16:
      return 2;
    case GgmlType::q8_0:
      return kQ8Bytes;
    case GgmlType::q5_0:
      return kQ5Bytes;
    case GgmlType::q5_1:
      return kQ5_1Bytes;
    case GgmlType::q5_k:
      return kQ5KBytes;
    case GgmlType::q4_k:
      return kQ4KBytes;
    case GgmlType::q6_k:
      return kQ6KBytes;
  }
  return 0;
}

int64_t ggml_row_bytes(GgmlType t, int64_t n) {
  TUNE_ASSERT(n % ggml_block_size(t) == 0, "row of ", n, " values in ", ggml_type_name(t));
  return n / ggml_block_size(t) * ggml_block_bytes(t);
}

GgmlType gguf_fallback_type(GgmlType wanted, int64_t row_length) {
  if (row_length % ggml_block_size(wanted) == 0) return wanted;
  GgmlType t = wanted;
  if (wanted == GgmlType::q4_k) t = GgmlType::q5_0;
  if (wanted == GgmlType::q5_k) t = GgmlType::q5_1;
  if (wanted == GgmlType::q6_k) t = GgmlType::q8_0;
  if (row_length % ggml_block_size(t) != 0) t = GgmlType::f16;
  return t;
}

std::vector<uint8_t> ggml_encode(GgmlType t, const float* x, int64_t rows, int64_t n,
                                 const std::string& what) {
  int64_t block = ggml_block_size(t);
  TUNE_CHECK(n % block == 0, what, ": rows of ", n, " values cannot be stored as ",
             ggml_type_name(t), ", which needs rows divisible by ", block,
             "; choose another type for it (llama.cpp's quantize falls back to Q5_0/Q8_0/F16)");
  int64_t row_bytes = ggml_row_bytes(t, n);
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes));
  uint8_t* o = out.data();
  int64_t total = rows * n;
  switch (t) {
    case GgmlType::f32:
      std::memcpy(o, x, static_cast<size_t>(total) * 4);
      return out;
    case GgmlType::f16:
      for (int64_t i = 0; i < total; ++i) {
        uint16_t h = f32_to_f16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return out;
    case GgmlType::bf16:
      for (int64_t i = 0; i < total; ++i) {
        uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return out;
    default:
      break;
  }
  QuantizeBlock q = quantizer(t);
  int64_t blocks = total / block;
  int64_t bytes = ggml_block_bytes(t);
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t b = 0; b < blocks; ++b) q(x + b * block, o + b * bytes);
  return out;
}

std::vector<float> ggml_decode(GgmlType t, const uint8_t* data, int64_t rows, int64_t n) {
  int64_t total = rows * n;
  std::vector<float> y(static_cast<size_t>(total));
  switch (t) {
    case GgmlType::f32:
      std::memcpy(y.data(), data, static_cast<size_t>(total) * 4);
      return y;
    case GgmlType::f16:
    case GgmlType::bf16:
      for (int64_t i = 0; i < total; ++i) {
        uint16_t h;
        std::memcpy(&h, data + 2 * i, 2);
        y[static_cast<size_t>(i)] = t == GgmlType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return y;
    default:
      break;
  }
  TUNE_ASSERT(n % ggml_block_size(t) == 0, "decode ", ggml_type_name(t), " rows of ", n);
  DequantizeBlock dq = dequantizer(t);
  int64_t block = ggml_block_size(t), bytes = ggml_block_bytes(t);
  for (int64_t b = 0; b < total / block; ++b) dq(data + b * bytes, y.data() + b * block);
  return y;
}

}  // namespace tune::io

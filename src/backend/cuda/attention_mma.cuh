// The tensor-core building blocks of the flash-attention kernels (attention.cu forward,
// attention_backward.cu backward): cp.async copies, ldmatrix fragment loads, mma.sync m16n8k16
// with f32 accumulators for bf16 and f16, and packing two f32 into one 32-bit A/B register.
// Fragment layout (PTX ISA, m16n8k16): thread (gid = lane / 4, tig = lane % 4) holds
// C[gid][2 tig + e] in c[e] and C[gid + 8][2 tig + e] in c[2 + e].
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace tune::cuda {
namespace attention_mma {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; zero-filled when !valid (src not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
// 4 bytes global -> shared; zero when !valid (src not read).
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::);
}
// All but the most recent commit group have landed.
__device__ __forceinline__ void cp_async_wait_all_but_one() {
  asm volatile("cp.async.wait_group 1;\n" ::);
}

// Rows [r0, r0 + rows) of a head with row stride `stride` (rows outside [0, limit) zero) into
// sm [rows][DP + 8] by THREADS threads; columns past d zero. Where THREADS is a multiple of the
// DP / 8 column chunks, each thread keeps one chunk, so its next row is a pointer add (the
// generic loop's division and 64-bit multiply per chunk kept the integer pipe the busiest).
template <typename T, int DP, int THREADS>
__device__ __forceinline__ void load_padded_rows(T* sm, const T* g, int64_t stride, int64_t r0,
                                                 int rows, int64_t limit, int d) {
  constexpr int kChunks = DP / 8, kLd = DP + 8;
  if constexpr (THREADS % kChunks == 0) {
    constexpr int kRowStep = THREADS / kChunks;
    const int col = static_cast<int>(threadIdx.x % kChunks) * 8;
    const int first = static_cast<int>(threadIdx.x / kChunks);
    const bool col_in = col < d;
    const T* src = g + (r0 + first) * stride + col;
    T* dst = sm + first * kLd + col;
    for (int r = first; r < rows; r += kRowStep, src += kRowStep * stride, dst += kRowStep * kLd) {
      const int64_t row = r0 + r;
      const bool valid = col_in && row < limit && row >= 0;
      cp_async16(dst, valid ? src : g, valid);
    }
  } else {
    for (int c = threadIdx.x; c < rows * kChunks; c += THREADS) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      const int64_t row = r0 + r;
      const bool valid = row < limit && row >= 0 && col < d;
      cp_async16(sm + r * kLd + col, valid ? g + row * stride + col : g, valid);
    }
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// Columns [16 kt, 16 kt + 16) of a 16-row block held in accumulator layout (x[n] = columns
// [8 n, 8 n + 8)), rounded to T, as an m16n8k16 A fragment (wgmma's register A per warp too).
template <typename T, int N>
__device__ __forceinline__ void a_fragment(uint32_t (&a)[4], const float (&x)[N][4], int kt) {
  a[0] = pack2<T>(x[2 * kt][0], x[2 * kt][1]);
  a[1] = pack2<T>(x[2 * kt][2], x[2 * kt][3]);
  a[2] = pack2<T>(x[2 * kt + 1][0], x[2 * kt + 1][1]);
  a[3] = pack2<T>(x[2 * kt + 1][2], x[2 * kt + 1][3]);
}

}  // namespace attention_mma
}  // namespace tune::cuda

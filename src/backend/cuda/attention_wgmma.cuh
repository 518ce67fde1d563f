// Hopper's warpgroup MMA (wgmma, sm_90a) for the flash-attention kernels: shared-memory tiles
// in the 128-byte swizzled layout wgmma reads, their matrix descriptors, and
// wgmma.mma_async.m64nNk16 (N 64 or 128) with f32 accumulators, A from shared memory (mma_ss) or
// from registers (mma_rs). Everything here runs only in the sm_90a build (TUNE_WGMMA); callers
// choose these kernels at run time when the device is compute capability 9.x.
//
// Tile layout (PTX ISA, "Shared Memory Matrix Layout", 128B swizzle): a tile of R rows x DP
// 16-bit columns is stored as DP / 64 column blocks of R rows x 128 bytes; in row r the 16-byte
// chunk c sits at chunk position c ^ (r % 8). Every block starts on a 1024-byte boundary (the
// swizzle repeats every 8 rows = 1024 bytes and the descriptors' base offset is 0).
// - K-major operand (Q, K, dO, V as the B of S = Q K^T): rows are M or N, the 64 columns of a block
//   are K; a k16 step inside a block moves the start address by 32 bytes; SBO = 1024 (8 rows).
// - MN-major operand (V as the B of O = P V, K and Q and dO as the B of the backward's dX = dS Y):
//   rows are K (keys or queries), columns N; a k16 step moves the start by 16 rows = 2048 bytes;
//   LBO = the column-block stride (R x 128), SBO = 1024 (the next 8 rows).
// Accumulator and register-A fragments have mma.sync's m16n8k16 layout per warp (warp w of the
// warpgroup holds rows [16 w, 16 w + 16)): d[n][e] is row gid, column 8 n + 2 tig + e, and
// d[n][2 + e] row gid + 8 — the layout the kernels' softmax code already uses.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/cuda_check.h"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TUNE_WGMMA 1
#else
#define TUNE_WGMMA 0
#endif

namespace tune::cuda {
namespace attention_wgmma {

// Whether this thread's device runs the sm_90a kernels (compute capability 9.x).
inline bool wgmma_device() {
  thread_local const bool yes = [] {
    int dev = 0, major = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&dev));
    TUNE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major == 9;
  }();
  return yes;
}

// Byte offset of 16-byte chunk c (elements [8 c, 8 c + 8)) of row r in a swizzled tile of R rows.
template <int R>
__device__ __forceinline__ uint32_t chunk_offset(int r, int c) {
  return static_cast<uint32_t>((c / 8) * R * 128 + r * 128 + (((c % 8) ^ (r % 8)) << 4));
}

// Rows [r0, r0 + R) of a [*, row_stride] head (rows outside [0, limit) zero) into a swizzled
// tile of R rows x DP columns (DP == d).
template <typename T, int DP, int R, int THREADS>
__device__ __forceinline__ void load_swizzled(T* sm, const T* g, int64_t row_stride, int64_t r0,
                                              int64_t limit) {
  // Each thread copies one 16-byte column chunk of every kRowStep-th row: its column, its first
  // row and the source pointer's step are fixed, so the loop is an add per chunk, not a division
  // and a 64-bit multiply.
  constexpr int kChunks = DP / 8;
  static_assert(THREADS % kChunks == 0, "a thread keeps one column chunk");
  constexpr int kRowStep = THREADS / kChunks;
  static_assert(kRowStep % 8 == 0, "the swizzle repeats every 8 rows");
  const int col = static_cast<int>(threadIdx.x % kChunks);
  const int first = static_cast<int>(threadIdx.x / kChunks);
  const T* src = g + (r0 + first) * row_stride + col * 8;
  const int64_t src_step = kRowStep * row_stride;
  char* dst = reinterpret_cast<char*>(sm) + chunk_offset<R>(first, col);
#pragma unroll
  for (int r = first; r < R; r += kRowStep, src += src_step, dst += kRowStep * 128) {
    const int64_t row = r0 + r;
    const bool valid = row < limit && row >= 0;
    attention_mma::cp_async16(dst, valid ? src : g, valid);
  }
}

// The dynamic shared memory rounded up to the 1024-byte boundary the swizzle needs (launches ask
// for 1024 bytes more than they use).
__device__ __forceinline__ unsigned char* swizzle_aligned(unsigned char* smem) {
  const uint32_t a = attention_mma::smem_addr(smem);
  return smem + ((1024 - (a & 1023)) & 1023);
}

// Matrix descriptor: start address, leading and stride byte offsets, 128-byte swizzle.
__device__ __forceinline__ uint64_t descriptor(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32) | (1ull << 62);
}

// A K-major operand: rows [row0, row0 + 64 or N) of a swizzled tile of R rows, columns
// [k, k + 16).
template <int R>
__device__ __forceinline__ uint64_t k_major(const void* tile, int row0, int k) {
  return descriptor(static_cast<const char*>(tile) + (k / 64) * R * 128 + row0 * 128 + (k % 64) * 2,
                    16, 1024);
}

// An MN-major operand: rows [k, k + 16) of a swizzled tile of R rows, all its columns as N.
template <int R>
__device__ __forceinline__ uint64_t mn_major(const void* tile, int k) {
  return descriptor(static_cast<const char*>(tile) + k * 128, R * 128, 1024);
}

// A descriptor moved `bytes` (a multiple of 16) further into shared memory: descriptors hold the
// address in 16-byte units in their low 14 bits, and shared addresses stay below 2^18, so this is
// an add — where building one from a pointer is a conversion, a mask and shifts. Loops build their
// tiles' descriptors once and step them.
__device__ __forceinline__ uint64_t advance(uint64_t desc, uint32_t bytes) {
  return desc + (bytes >> 4);
}
// The byte steps of k_major (k) and mn_major (rows k) within a tile of R rows.
template <int R>
__host__ __device__ constexpr uint32_t k_major_step(int k) {
  return static_cast<uint32_t>((k / 64) * R * 128 + (k % 64) * 2);
}
__host__ __device__ constexpr uint32_t mn_major_step(int k) {
  return static_cast<uint32_t>(k * 128);
}

__device__ __forceinline__ void fence() {
#if TUNE_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if TUNE_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wait() {
#if TUNE_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Shared memory written by ordinary stores or cp.async, read next by wgmma (the async proxy):
// each writing thread fences before the barrier that publishes it.
__device__ __forceinline__ void fence_async_shared() {
#if TUNE_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Keeps the compiler from moving reads or writes of registers across a wgmma wait.
template <int R, int C>
__device__ __forceinline__ void fence_registers(float (&d)[R][C]) {
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < C; ++j) asm volatile("" : "+f"(d[i][j])::"memory");
}
template <int R, int C>
__device__ __forceinline__ void fence_registers(uint32_t (&d)[R][C]) {
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < C; ++j) asm volatile("" : "+r"(d[i][j])::"memory");
}

// d (64 x N) = (accumulate 0) or += A (64 x 16, K-major descriptor) . B (16 x N, K-major
// descriptor). Start a product with accumulate 0 rather than zeroing d: ptxas serializes wgmma
// chains whose accumulators were just written by ordinary instructions (warning C7520).
template <int N, typename T>
__device__ void mma_ss(float (&d)[N / 8][4], uint64_t a, uint64_t b, int accumulate);
// d (64 x N) += A (64 x 16, registers) . B (16 x N, MN-major descriptor).
template <int N, typename T>
__device__ void mma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b);

// The operand lists are spelled out (inline asm cannot loop): the accumulator registers in
// wgmma's order, d[n][e] = d_{4 n + e}.
#define TUNE_WGMMA_D64                                                                         \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define TUNE_WGMMA_D64_OPERANDS                                                                 \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),     \
      "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
      "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), \
      "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), \
      "+f"(d[7][2]), "+f"(d[7][3])
#define TUNE_WGMMA_D128                                                                        \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, " \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, " \
  "%56, %57, %58, %59, %60, %61, %62, %63"
#define TUNE_WGMMA_D128_OPERANDS                                                                  \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),       \
      "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),   \
      "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),   \
      "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),   \
      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),   \
      "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),   \
      "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), \
      "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]),             \
      "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),             \
      "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]),             \
      "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]),             \
      "+f"(d[15][2]), "+f"(d[15][3])

// Outside the sm_90a build the wrappers trap: callers check wgmma_device() first.
#if TUNE_WGMMA
#define TUNE_WGMMA_ASM(...) asm volatile(__VA_ARGS__)
#else
#define TUNE_WGMMA_ASM(...) __trap()
#endif

// d (64 x 64) of T = PTX (bf16 or f16): the two wrappers for N = 64.
#define TUNE_WGMMA_N64(T, PTX)                                                           \
  template <>                                                                            \
  __device__ __forceinline__ void mma_ss<64, T>(float(&d)[8][4], uint64_t a, uint64_t b, \
                                                int accumulate) {                        \
    TUNE_WGMMA_ASM(                                                                      \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                     \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX " {" TUNE_WGMMA_D64    \
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                               \
        : TUNE_WGMMA_D64_OPERANDS                                                        \
        : "l"(a), "l"(b), "r"(accumulate));                                              \
  }                                                                                      \
  template <>                                                                            \
  __device__ __forceinline__ void mma_rs<64, T>(float(&d)[8][4], const uint32_t(&a)[4],  \
                                                uint64_t b) {                            \
    TUNE_WGMMA_ASM(                                                                      \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                     \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX " {" TUNE_WGMMA_D64    \
        "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                 \
        : TUNE_WGMMA_D64_OPERANDS                                                        \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                   \
  }

// d (64 x 128) of T = PTX (bf16 or f16): the two wrappers for N = 128.
#define TUNE_WGMMA_N128(T, PTX)                                                            \
  template <>                                                                              \
  __device__ __forceinline__ void mma_ss<128, T>(float(&d)[16][4], uint64_t a, uint64_t b, \
                                                 int accumulate) {                         \
    TUNE_WGMMA_ASM(                                                                        \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                       \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX "." PTX " {" TUNE_WGMMA_D128    \
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"                                                 \
        : TUNE_WGMMA_D128_OPERANDS                                                         \
        : "l"(a), "l"(b), "r"(accumulate));                                                \
  }                                                                                        \
  template <>                                                                              \
  __device__ __forceinline__ void mma_rs<128, T>(float(&d)[16][4], const uint32_t(&a)[4],  \
                                                 uint64_t b) {                             \
    TUNE_WGMMA_ASM(                                                                        \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                       \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX "." PTX " {" TUNE_WGMMA_D128    \
        "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                   \
        : TUNE_WGMMA_D128_OPERANDS                                                         \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                     \
  }

TUNE_WGMMA_N64(__nv_bfloat16, "bf16")
TUNE_WGMMA_N64(__half, "f16")
TUNE_WGMMA_N128(__nv_bfloat16, "bf16")
TUNE_WGMMA_N128(__half, "f16")

#undef TUNE_WGMMA_N64
#undef TUNE_WGMMA_N128
#undef TUNE_WGMMA_ASM
#undef TUNE_WGMMA_D64
#undef TUNE_WGMMA_D64_OPERANDS
#undef TUNE_WGMMA_D128
#undef TUNE_WGMMA_D128_OPERANDS

}  // namespace attention_wgmma
}  // namespace tune::cuda

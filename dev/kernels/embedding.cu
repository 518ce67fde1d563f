// Lab: embedding lookup and its scatter-add backward.
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/embedding.cu -o build/lab/embedding
// The engine kernels (src/backend/cuda/embedding.cu) are compiled in. Variants:
//   forward 1: scalar copies (V = 1);  forward 2: 16-byte packs (the engine's choice).
//   backward 1: f32 atomicAdd into an f32 table (non-deterministic, for comparison; f32 only);
//   backward 2: per-id ownership, the engine's kernel until it was replaced (kept here): block r
//               scans ids[0, r) for an earlier owner, so the work grows as n^2;
//   backward 3: the engine's: keys, CUB radix sort of (id, row), one block per run of equal ids
//               (timed whole, with its cudaMallocAsync; "3 segs" times the last kernel alone).
// Backward checks: variants 2 and 3 against a CPU reference that does the same f32 additions in
// row order (so: bit-exact), against each other (bit-exact, the whole table), 3 against itself
// (two runs), 3 against an f64 sum (tolerance, for sanity), bad ids reported as the first bad row.
// Timed (median of 20, events) in GB/s of the bytes moved: forward 2 N C elements; backward the
// dout rows plus the table rows touched, read and written.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "../../src/backend/cuda/embedding.cu"

using namespace tune::cuda;
using bf16 = __nv_bfloat16;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

// ---- backward 1: atomics ----
__global__ void backward_atomic(float* dtable, const float* dout, const int64_t* ids, int64_t c) {
  const int64_t r = blockIdx.x;
  float* dst = dtable + ids[r] * c;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) atomicAdd(dst + j, dout[r * c + j]);
}

// ---- backward 2: per-id ownership (the engine's kernel before the sort) ----
template <typename T, typename I>
__global__ void backward_owned(T* dtable, const T* dout, const I* ids, int64_t n, int64_t c,
                               int64_t vocab, unsigned long long* bad) {
  extern __shared__ float acc[];  // (c)
  __shared__ unsigned char hit[kThreads];
  const int64_t r = blockIdx.x;
  const I id = ids[r];
  if (static_cast<int64_t>(id) < 0 || static_cast<int64_t>(id) >= vocab) {
    if (threadIdx.x == 0) report_bad_index(bad, r);
    return;
  }
  for (int64_t m0 = 0; m0 < r; m0 += blockDim.x) {
    const int64_t m = m0 + threadIdx.x;
    if (__syncthreads_or(m < r && ids[m] == id)) return;  // an earlier row owns this id
  }
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) acc[j] = 0.f;
  for (int64_t m0 = r; m0 < n; m0 += blockDim.x) {
    const int64_t m = m0 + threadIdx.x;
    const bool h = m < n && ids[m] == id;
    hit[threadIdx.x] = h;
    if (!__syncthreads_or(h)) continue;
    const int count = static_cast<int>(std::min<int64_t>(blockDim.x, n - m0));
    for (int k = 0; k < count; ++k) {
      if (!hit[k]) continue;
      const T* src = dout + (m0 + k) * c;
      for (int64_t j = threadIdx.x; j < c; j += blockDim.x) acc[j] += to_f(src[j]);
    }
    __syncthreads();  // hit[] is rewritten next chunk
  }
  T* dst = dtable + static_cast<int64_t>(id) * c;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dst[j] = from_f<T>(to_f(dst[j]) + acc[j]);
}

template <typename T>
void launch_owned(T* dtable, const T* dout, const int64_t* ids, int64_t n, int64_t c, int64_t vocab,
                  unsigned long long* bad) {
  const size_t smem = static_cast<size_t>(c) * 4;
  CK(cudaFuncSetAttribute(backward_owned<T, int64_t>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                          static_cast<int>(smem)));
  backward_owned<T, int64_t><<<static_cast<unsigned>(n), kThreads, smem, cudaStreamPerThread>>>(
      dtable, dout, ids, n, c, vocab, bad);
}

// ---- host helpers ----
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform() { return static_cast<float>(next() >> 40) * (2.f / 16777216.f) - 1.f; }
};

template <typename T>
float hf(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __bfloat162float(v);
  }
}
template <typename T>
T ht(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __float2bfloat16(v);
  }
}

template <typename F>
double time_ms(F&& f, int reps = 20) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int it = 0; it < reps + 3; ++it) {
    CK(cudaEventRecord(a, cudaStreamPerThread));
    f();
    CK(cudaEventRecord(b, cudaStreamPerThread));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    if (it >= 3) ms.push_back(t);
  }
  CK(cudaGetLastError());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

bool all_ok = true;

// ---- forward ----
void forward_lab() {
  const int64_t vocab = 128256, c = 4096;
  Rng rng{3};
  std::vector<bf16> table(vocab * c);
  for (auto& x : table) x = __float2bfloat16(rng.uniform());
  bf16* dtab;
  CK(cudaMalloc(&dtab, table.size() * 2));
  CK(cudaMemcpy(dtab, table.data(), table.size() * 2, cudaMemcpyHostToDevice));
  for (int64_t n : {int64_t{1}, int64_t{64}, int64_t{8192}, int64_t{16384}}) {
    std::vector<int64_t> ids(n);
    for (auto& x : ids) x = static_cast<int64_t>(rng.next() % vocab);
    int64_t* dids;
    bf16* dout;
    CK(cudaMalloc(&dids, n * 8));
    CK(cudaMalloc(&dout, n * c * 2));
    CK(cudaMemcpy(dids, ids.data(), n * 8, cudaMemcpyHostToDevice));
    const double fbytes = 2.0 * n * c * 2;
    for (int v = 1; v <= 2; ++v) {
      auto call = [&] {
        if (v == 1) {
          embedding_forward_rows<bf16, int64_t, 1>
              <<<n, 256, 0, cudaStreamPerThread>>>(dout, dids, dtab, c, vocab, nullptr);
        } else {
          embedding_forward_rows<bf16, int64_t, 8>
              <<<n, 256, 0, cudaStreamPerThread>>>(dout, dids, dtab, c, vocab, nullptr);
        }
      };
      CK(cudaMemset(dout, 0xff, n * c * 2));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<bf16> got(n * c);
      CK(cudaMemcpy(got.data(), dout, n * c * 2, cudaMemcpyDeviceToHost));
      bool ok = true;
      for (int64_t r = 0; r < n && ok; ++r)
        ok = std::memcmp(&got[r * c], &table[ids[r] * c], c * 2) == 0;
      all_ok &= ok;
      const double ms = time_ms(call);
      std::printf("%-12s %-5s fwd %-7d %10.1f %10.0f %s\n", ("n=" + std::to_string(n)).c_str(),
                  "bf16", v, ms * 1e3, fbytes / (ms * 1e-3) / 1e9, ok ? "exact" : "FAIL");
    }
    CK(cudaFree(dids));
    CK(cudaFree(dout));
  }
  CK(cudaFree(dtab));
}

// ---- backward ----
enum class Ids : uint8_t { random, positions, padding, bad };

struct Case {
  const char* name;
  int64_t n, c, vocab;
  Ids ids;
  bool timed;
};

std::vector<int64_t> make_ids(const Case& k, Rng& rng) {
  std::vector<int64_t> ids(k.n);
  for (int64_t r = 0; r < k.n; ++r) {
    ids[r] = k.ids == Ids::positions ? r % k.vocab : static_cast<int64_t>(rng.next() % k.vocab);
    if (k.ids == Ids::padding && r % 2 == 0) ids[r] = k.vocab - 1;  // a pad id on every other row
  }
  if (k.ids == Ids::bad) ids[5] = -1, ids[77] = k.vocab, ids[k.n - 3] = -3;
  return ids;
}

// dtable += scatter of dout at ids, with the engine's arithmetic: per id, an f32 sum of its rows
// in row order from 0, then one rounding of dst + sum. Also, for sanity, the largest difference
// from the f64 sum relative to |dst| + sum |rows| (the scale of summation error). Rows with bad
// ids contribute nothing.
template <typename T>
double cpu_reference(std::vector<T>& dtable, const std::vector<T>& dout,
                     const std::vector<int64_t>& ids, int64_t c, int64_t vocab) {
  std::vector<int64_t> order(ids.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return static_cast<uint64_t>(ids[a]) < static_cast<uint64_t>(ids[b]);
  });
  std::vector<float> acc(c);
  std::vector<double> dacc(c), dabs(c);
  double worst = 0;
  for (size_t s = 0; s < order.size();) {
    const int64_t id = ids[order[s]];
    size_t e = s;
    while (e < order.size() && ids[order[e]] == id) ++e;
    if (id >= 0 && id < vocab) {
      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(dacc.begin(), dacc.end(), 0.0);
      std::fill(dabs.begin(), dabs.end(), 0.0);
      for (size_t q = s; q < e; ++q) {
        const T* src = &dout[order[q] * c];
        for (int64_t j = 0; j < c; ++j) {
          acc[j] += hf(src[j]);
          dacc[j] += hf(src[j]);
          dabs[j] += std::abs(hf(src[j]));
        }
      }
      T* dst = &dtable[id * c];
      for (int64_t j = 0; j < c; ++j) {
        const double exact = static_cast<double>(hf(dst[j])) + dacc[j];
        const double scale = std::abs(hf(dst[j])) + dabs[j];
        dst[j] = ht<T>(hf(dst[j]) + acc[j]);
        if (scale > 0) worst = std::max(worst, std::abs(hf(dst[j]) - exact) / scale);
      }
    }
    s = e;
  }
  return worst;
}

template <typename T>
void backward_case(const Case& k, const char* tname) {
  const int64_t n = k.n, c = k.c, vocab = k.vocab;
  Rng rng{static_cast<uint64_t>(n * 131 + c * 7 + vocab) | 1};
  const std::vector<int64_t> ids = make_ids(k, rng);
  std::vector<T> dout(n * c), table0(vocab * c);
  for (auto& x : dout) x = ht<T>(rng.uniform());
  for (auto& x : table0) x = ht<T>(rng.uniform());
  std::vector<T> ref = table0;
  const double f64_err = cpu_reference(ref, dout, ids, c, vocab);
  int64_t first_bad = -1;
  for (int64_t r = 0; r < n && first_bad < 0; ++r)
    if (ids[r] < 0 || ids[r] >= vocab) first_bad = r;

  const size_t tbytes = table0.size() * sizeof(T);
  int64_t* dids;
  T *ddout, *dtab, *dtab0;
  unsigned long long* dbad;
  CK(cudaMalloc(&dids, n * 8));
  CK(cudaMalloc(&ddout, dout.size() * sizeof(T)));
  CK(cudaMalloc(&dtab, tbytes));
  CK(cudaMalloc(&dtab0, tbytes));
  CK(cudaMalloc(&dbad, 8));
  CK(cudaMemcpy(dids, ids.data(), n * 8, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(ddout, dout.data(), dout.size() * sizeof(T), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dtab0, table0.data(), tbytes, cudaMemcpyHostToDevice));

  // One run of variant v from table0; the table and the reported first bad row come back.
  auto run = [&](int v, std::vector<T>& got) {
    CK(cudaMemcpy(dtab, dtab0, tbytes, cudaMemcpyDeviceToDevice));
    CK(cudaMemset(dbad, 0xff, 8));
    if (v == 2) launch_owned<T>(dtab, ddout, dids, n, c, vocab, dbad);
    if (v == 3) embedding_backward_sorted<T, int64_t>(dtab, ddout, dids, n, c, vocab, dbad);
    CK(cudaDeviceSynchronize());
    got.resize(table0.size());
    CK(cudaMemcpy(got.data(), dtab, tbytes, cudaMemcpyDeviceToHost));
    unsigned long long b;
    CK(cudaMemcpy(&b, dbad, 8, cudaMemcpyDeviceToHost));
    return b == ~0ull ? int64_t{-1} : static_cast<int64_t>(b);
  };
  std::vector<T> got2, got3, got3b;
  const int64_t bad2 = run(2, got2), bad3 = run(3, got3), bad3b = run(3, got3b);
  const bool ref2 = std::memcmp(got2.data(), ref.data(), tbytes) == 0;
  const bool ref3 = std::memcmp(got3.data(), ref.data(), tbytes) == 0;
  const bool same23 = std::memcmp(got2.data(), got3.data(), tbytes) == 0;
  const bool same33 = std::memcmp(got3.data(), got3b.data(), tbytes) == 0;
  const bool bad_ok = bad2 == first_bad && bad3 == first_bad && bad3b == first_bad;
  const double tol = std::is_same_v<T, float> ? 1e-6 : 4e-3;  // bf16: one rounding, 2^-9
  const bool ok = ref2 && ref3 && same23 && same33 && bad_ok && f64_err <= tol;
  all_ok &= ok;
  std::printf(
      "%-12s %-5s bwd check   2==cpu %s, 3==cpu %s, 2==3 %s, 3==3 %s, bad row %ld/%ld/%ld "
      "(want %ld), f64 rel %.1e  %s\n",
      k.name, tname, ref2 ? "yes" : "NO", ref3 ? "yes" : "NO", same23 ? "yes" : "NO",
      same33 ? "yes" : "NO", static_cast<long>(bad2), static_cast<long>(bad3),
      static_cast<long>(bad3b), static_cast<long>(first_bad), f64_err, ok ? "ok" : "FAIL");

  if (k.timed) {
    std::vector<char> seen(vocab, 0);
    int64_t distinct = 0;
    for (int64_t id : ids)
      if (id >= 0 && id < vocab && !seen[id]) seen[id] = 1, ++distinct;
    const double bytes = (static_cast<double>(n) + 2.0 * distinct) * c * sizeof(T);
    auto report = [&](const char* v, double ms) {
      std::printf("%-12s %-5s bwd %-7s %10.1f %10.0f\n", k.name, tname, v, ms * 1e3,
                  bytes / (ms * 1e-3) / 1e9);
    };
    // The table keeps accumulating across repetitions: values grow, the work does not change.
    if constexpr (std::is_same_v<T, float>) {
      report("1", time_ms([&] {
               backward_atomic<<<n, 256, 0, cudaStreamPerThread>>>(dtab, ddout, dids, c);
             }));
    }
    report("2", time_ms([&] { launch_owned<T>(dtab, ddout, dids, n, c, vocab, nullptr); }));
    report("3", time_ms([&] {
             embedding_backward_sorted<T, int64_t>(dtab, ddout, dids, n, c, vocab, nullptr);
           }));
    // Step 3 alone, on keys and rows sorted once here as the engine does.
    uint32_t *keys_in, *keys;
    int32_t *rows_in, *rows;
    CK(cudaMalloc(&keys_in, n * 4));
    CK(cudaMalloc(&keys, n * 4));
    CK(cudaMalloc(&rows_in, n * 4));
    CK(cudaMalloc(&rows, n * 4));
    const int end_bit = std::max(1, static_cast<int>(std::bit_width(static_cast<uint32_t>(vocab))));
    size_t sort_bytes = 0;
    CK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys_in, keys, rows_in, rows,
                                       static_cast<int>(n), 0, end_bit, cudaStreamPerThread));
    void* sort_tmp;
    CK(cudaMalloc(&sort_tmp, sort_bytes));
    auto sort = [&] {
      embedding_backward_keys<int64_t><<<(n + 255) / 256, 256, 0, cudaStreamPerThread>>>(
          keys_in, rows_in, dids, n, vocab, nullptr);
      CK(cub::DeviceRadixSort::SortPairs(sort_tmp, sort_bytes, keys_in, keys, rows_in, rows,
                                         static_cast<int>(n), 0, end_bit, cudaStreamPerThread));
    };
    report("3 sort", time_ms(sort));
    constexpr int V = 16 / sizeof(T);
    const int threads = static_cast<int>(std::clamp<int64_t>((c / V + 31) / 32 * 32, 32, 256));
    if (c % V == 0) {
      report("3 segs", time_ms([&] {
               embedding_backward_segments<T, V><<<n, threads, 0, cudaStreamPerThread>>>(
                   dtab, ddout, keys, rows, n, c, static_cast<uint32_t>(vocab));
             }));
    }
    CK(cudaFree(keys_in));
    CK(cudaFree(keys));
    CK(cudaFree(rows_in));
    CK(cudaFree(rows));
    CK(cudaFree(sort_tmp));
  }
  CK(cudaFree(dids));
  CK(cudaFree(ddout));
  CK(cudaFree(dtab));
  CK(cudaFree(dtab0));
  CK(cudaFree(dbad));
}

int main() {
  // As the engine does (src/backend/cuda/device.cu): the pool keeps freed memory, so that the
  // backward's cudaMallocAsync reuses it instead of mapping pages each call.
  cudaMemPool_t pool;
  CK(cudaDeviceGetMemPool(&pool, 0));
  uint64_t keep = UINT64_MAX;
  CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  std::printf("%-12s %-5s %-3s %-7s %10s %10s\n", "case", "dtype", "dir", "variant", "us", "GB/s");
  forward_lab();
  const Case cases[] = {
      {"gpt2-wte", 65536, 768, 50257, Ids::random, true},
      {"gpt2-wpe", 65536, 768, 1024, Ids::positions, true},
      {"llama", 8192, 4096, 128256, Ids::random, true},
      {"pad-half", 65536, 768, 50257, Ids::padding, true},  // 32768 rows of one id
      {"few-ids", 4097, 80, 7, Ids::random, false},
      {"few-ids-c77", 4097, 77, 7, Ids::random, false},  // scalar path
      {"one-row", 1, 64, 3, Ids::random, false},
      {"bad-ids", 4097, 64, 1000, Ids::bad, false},
  };
  for (const Case& k : cases) {
    backward_case<bf16>(k, "bf16");
    backward_case<float>(k, "f32");
  }
  std::printf("%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
  return all_ok ? 0 : 1;
}

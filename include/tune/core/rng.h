// Counter-based random numbers (Philox-4x32-10): the value at (seed, stream, index) is a pure
// function of those three, so the same stream can be produced on every device, in any order and
// at any thread count, and a run can resume exactly from a step counter alone.
#pragma once

#include <array>
#include <cstdint>

namespace tune {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo);

// Uniform in [0, 1) from element `index` of stream `stream` under `seed`.
float uniform01(uint64_t seed, uint64_t stream, uint64_t index);
// Standard normal (Box-Muller over a Philox pair).
float normal01(uint64_t seed, uint64_t stream, uint64_t index);

}  // namespace tune

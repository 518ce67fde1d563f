// The few things core needs from a device backend: memory and copies. Declared here, defined by
// src/backend/cuda (or by its no_cuda.cpp stub, which says the build has no CUDA), so core never
// includes a backend header.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace tune {

// True when this build has the CUDA backend and a device is visible.
bool cuda_available();
int cuda_device_count();
// One line per device ("0: NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"), or why there are none.
std::string cuda_describe();

// Device memory, freed when the returned owner is released.
std::shared_ptr<void> cuda_allocate(size_t bytes, void** data);
enum class CopyKind { host_to_device, device_to_host, device_to_device };
void cuda_copy(void* dst, const void* src, size_t bytes, CopyKind kind);

}  // namespace tune

// Runtime choice of SIMD target: the best one compiled in that this CPU (and its OS) can
// run, unless the LOGITKIT_SIMD environment variable names another.
#pragma once

#include <string>
#include <vector>

#include "kernel_table.hpp"

namespace logitkit {

// Targets compiled into this build, from the most basic to the most capable.
std::vector<std::string> compiled_targets();
// The compiled targets this CPU can run.
std::vector<std::string> supported_targets();
// The table in use. Chosen once, on first use, from LOGITKIT_SIMD or the CPU.
const KernelTable& active_kernels();
// Switch to another supported target (for tests and benchmarks); returns the previous name.
// Throws std::invalid_argument for a target that is not compiled in or not supported.
std::string set_active_target(const std::string& name);

}  // namespace logitkit

// Whether this LibTorch's bf16 matrix products on the CPU keep their inner sums in float.
// LibTorch 1.13 on a CPU without AVX-512 (no oneDNN bf16 path) sums some product layouts in
// bf16, 1-4% off fp32 for inner dimensions of 256-1000; every command warns when bf16 is asked
// for there, after its runtime line. Kept out of device.h so that asking does not rebuild every
// user of the runtime.
#pragma once

namespace attnseg {

// Measured once per process: 1024 ones summed by a [16, 1024] x [1024, 16] bf16 product give
// 1024 when the sums stay in float and stall at 256 when they are kept in bf16 (whose spacing
// there is 2).
bool cpu_bf16_products_accumulate_in_float();

struct Runtime;
// One warning line when the runtime computes in bf16 on a CPU whose products sum in bf16.
void warn_if_bf16_sums_in_bf16(const Runtime& runtime);

}  // namespace attnseg

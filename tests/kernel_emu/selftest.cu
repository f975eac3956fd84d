// entry: emu_shuffle_kernel emu_exited_lane_kernel emu_deadlock_kernel emu_trap_kernel emu_write_at_kernel emu_foreign_mask_kernel emu_shared_unwritten_kernel
//
// Kernels that check the kernel emulator itself (never compiled by NVRTC; built by
// tests/kernel_emu/build.rs next to kernels/*.cu): src/backend/cuda/emu.rs's unit tests
// launch them and expect the shuffle results below, or an error naming the fault.

// With each lane's value its lane number: out[t] = (lane ^ 1) + 100 * 3 + 10000 * (the
// width-16 xor-16 shuffle: lane - 16 for lanes 16..32, which may read the earlier
// segment, and the lane's own value for lanes 0..16, which may not read the later one);
// sums[block] = the sum of thread indices (warp butterflies, then shared memory).
extern "C" __global__ void emu_shuffle_kernel(int* out, float* sums) {
    const int t = threadIdx.x, lane = t & 31;
    const int x = __shfl_xor_sync(0xffffffffu, lane, 1);
    const int y = __shfl_sync(0xffffffffu, lane, 3);
    const int z = __shfl_xor_sync(0xffffffffu, lane, 16, 16);
    out[blockIdx.x * blockDim.x + t] = x + 100 * y + 10000 * z;
    float v = (float)t;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __shared__ float warp_sums[32];
    if (lane == 0) warp_sums[t >> 5] = v;
    __syncthreads();
    if (t == 0) {
        float s = 0.0f;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += warp_sums[w];
        sums[blockIdx.x] = s;
    }
}

// Odd lanes return before a full-warp __syncwarp: an error, not a hang.
extern "C" __global__ void emu_exited_lane_kernel() {
    if (threadIdx.x & 1) return;
    __syncwarp();
}

// Lane 0 waits at __syncwarp while the other lanes wait at __syncthreads.
extern "C" __global__ void emu_deadlock_kernel() {
    if (threadIdx.x == 0) {
        __syncwarp();
    } else {
        __syncthreads();
    }
}

extern "C" __global__ void emu_trap_kernel() {
    if (blockIdx.x == 1 && threadIdx.x == 5) __trap();
}

// p[index] = 1 from thread 0 of block 0 (an index past a guarded buffer's end faults).
extern "C" __global__ void emu_write_at_kernel(int* p, long long index) {
    if (blockIdx.x == 0 && threadIdx.x == 0) p[index] = 1;
}

// Lane 0 syncs with a mask of lane 1 only (CUDA requires the caller's own bit).
extern "C" __global__ void emu_foreign_mask_kernel() {
    if (threadIdx.x == 0) __syncwarp(0x2u);
}

// out[block] = a shared word as the block finds it before any of its threads writes it
// (0xFFFFFFFF: first_touch's fill), then every thread writes that word.
extern "C" __global__ void emu_shared_unwritten_kernel(unsigned* out) {
    __shared__ unsigned s[4];
    if (threadIdx.x == 0) out[blockIdx.x] = s[blockIdx.x & 3];
    __syncthreads();
    s[blockIdx.x & 3] = 7u;
}

// The few CUDA driver, NVRTC, cuBLASLt and NCCL entry points sfc uses, declared by hand (no CUDA
// headers needed to build) and resolved with dlopen/dlsym at run time. Versioned driver symbols are
// named explicitly (cuMemAlloc_v2, ...): these are the ABI the driver exports for every toolkit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sfc {

template <typename T>
using Fn = T;  // lets a function-pointer type be written before the declared name

// ---- CUDA driver ------------------------------------------------------------------------------
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
struct CUctx_st;
struct CUstream_st;
struct CUevent_st;
struct CUmod_st;
struct CUfunc_st;
struct CUgraph_st;
struct CUgraphExec_st;
using CUcontext = CUctx_st*;
using CUstream = CUstream_st*;
using CUevent = CUevent_st*;
using CUmodule = CUmod_st*;
using CUfunction = CUfunc_st*;
using CUgraph = CUgraph_st*;
using CUgraphExec = CUgraphExec_st*;

enum : int {
  CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13,
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36,
  CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37,
  CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
  CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
  CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
  CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3,
  CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
  CU_EVENT_DEFAULT = 0,
  CU_EVENT_DISABLE_TIMING = 2,
  CU_STREAM_NON_BLOCKING = 1,
  CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
};

struct DriverApi {
  void* handle = nullptr;
  std::string path, error;
#define SFC_DRIVER_FNS(X)                                                                        \
  X(cuInit, CUresult (*)(unsigned))                                                            \
  X(cuDriverGetVersion, CUresult (*)(int*))                                                    \
  X(cuGetErrorName, CUresult (*)(CUresult, const char**))                                      \
  X(cuGetErrorString, CUresult (*)(CUresult, const char**))                                    \
  X(cuDeviceGetCount, CUresult (*)(int*))                                                      \
  X(cuDeviceGet, CUresult (*)(CUdevice*, int))                                                 \
  X(cuDeviceGetName, CUresult (*)(char*, int, CUdevice))                                       \
  X(cuDeviceTotalMem_v2, CUresult (*)(size_t*, CUdevice))                                      \
  X(cuDeviceGetAttribute, CUresult (*)(int*, int, CUdevice))                                   \
  X(cuDeviceGetPCIBusId, CUresult (*)(char*, int, CUdevice))                                   \
  X(cuDevicePrimaryCtxRetain, CUresult (*)(CUcontext*, CUdevice))                              \
  X(cuCtxSetCurrent, CUresult (*)(CUcontext))                                                  \
  X(cuCtxSynchronize, CUresult (*)())                                                          \
  X(cuMemGetInfo_v2, CUresult (*)(size_t*, size_t*))                                           \
  X(cuMemAlloc_v2, CUresult (*)(CUdeviceptr*, size_t))                                         \
  X(cuMemFree_v2, CUresult (*)(CUdeviceptr))                                                   \
  X(cuMemAllocHost_v2, CUresult (*)(void**, size_t))                                           \
  X(cuMemFreeHost, CUresult (*)(void*))                                                        \
  X(cuMemcpyHtoDAsync_v2, CUresult (*)(CUdeviceptr, const void*, size_t, CUstream))            \
  X(cuMemcpyDtoHAsync_v2, CUresult (*)(void*, CUdeviceptr, size_t, CUstream))                  \
  X(cuMemcpyDtoDAsync_v2, CUresult (*)(CUdeviceptr, CUdeviceptr, size_t, CUstream))            \
  X(cuMemsetD8Async, CUresult (*)(CUdeviceptr, unsigned char, size_t, CUstream))               \
  X(cuMemsetD32Async, CUresult (*)(CUdeviceptr, unsigned, size_t, CUstream))                   \
  X(cuStreamCreate, CUresult (*)(CUstream*, unsigned))                                         \
  X(cuStreamDestroy_v2, CUresult (*)(CUstream))                                                \
  X(cuStreamSynchronize, CUresult (*)(CUstream))                                               \
  X(cuStreamWaitEvent, CUresult (*)(CUstream, CUevent, unsigned))                              \
  X(cuEventCreate, CUresult (*)(CUevent*, unsigned))                                           \
  X(cuEventDestroy_v2, CUresult (*)(CUevent))                                                  \
  X(cuEventRecord, CUresult (*)(CUevent, CUstream))                                            \
  X(cuEventSynchronize, CUresult (*)(CUevent))                                                 \
  X(cuEventElapsedTime, CUresult (*)(float*, CUevent, CUevent))                                \
  X(cuModuleLoadData, CUresult (*)(CUmodule*, const void*))                                    \
  X(cuModuleUnload, CUresult (*)(CUmodule))                                                    \
  X(cuModuleGetFunction, CUresult (*)(CUfunction*, CUmodule, const char*))                     \
  X(cuFuncGetAttribute, CUresult (*)(int*, int, CUfunction))                                   \
  X(cuFuncSetAttribute, CUresult (*)(CUfunction, int, int))                                    \
  X(cuLaunchKernel, CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, \
                                 unsigned, unsigned, CUstream, void**, void**))                \
  X(cuStreamBeginCapture_v2, CUresult (*)(CUstream, int))                                      \
  X(cuStreamEndCapture, CUresult (*)(CUstream, CUgraph*))                                      \
  X(cuGraphInstantiateWithFlags, CUresult (*)(CUgraphExec*, CUgraph, unsigned long long))      \
  X(cuGraphLaunch, CUresult (*)(CUgraphExec, CUstream))                                        \
  X(cuGraphExecDestroy, CUresult (*)(CUgraphExec))                                             \
  X(cuGraphDestroy, CUresult (*)(CUgraph))                                                     \
  X(cuTensorMapEncodeTiled, CUresult (*)(void*, int, unsigned, void*, const uint64_t*, const uint64_t*, \
                                         const unsigned*, const unsigned*, int, int, int, int))
#define SFC_DECLARE(name, type) Fn<type> name = nullptr;
  SFC_DRIVER_FNS(SFC_DECLARE)
  // optional (CUDA >= 12.4): parameter layout of a kernel, for launch validation
  CUresult (*cuFuncGetParamInfo)(CUfunction, size_t, size_t*, size_t*) = nullptr;
  bool ok() const { return handle != nullptr && error.empty(); }
};

// ---- NVRTC ------------------------------------------------------------------------------------
struct _nvrtcProgram;
using nvrtcProgram = _nvrtcProgram*;
using nvrtcResult = int;

struct NvrtcApi {
  void* handle = nullptr;
  std::string path, error;
#define SFC_NVRTC_FNS(X)                                                                                   \
  X(nvrtcVersion, nvrtcResult (*)(int*, int*))                                                           \
  X(nvrtcGetErrorString, const char* (*)(nvrtcResult))                                                   \
  X(nvrtcCreateProgram,                                                                                  \
    nvrtcResult (*)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*)) \
  X(nvrtcDestroyProgram, nvrtcResult (*)(nvrtcProgram*))                                                 \
  X(nvrtcCompileProgram, nvrtcResult (*)(nvrtcProgram, int, const char* const*))                         \
  X(nvrtcGetProgramLogSize, nvrtcResult (*)(nvrtcProgram, size_t*))                                      \
  X(nvrtcGetProgramLog, nvrtcResult (*)(nvrtcProgram, char*))                                            \
  X(nvrtcGetPTXSize, nvrtcResult (*)(nvrtcProgram, size_t*))                                             \
  X(nvrtcGetPTX, nvrtcResult (*)(nvrtcProgram, char*))                                                   \
  X(nvrtcGetCUBINSize, nvrtcResult (*)(nvrtcProgram, size_t*))                                           \
  X(nvrtcGetCUBIN, nvrtcResult (*)(nvrtcProgram, char*))
  SFC_NVRTC_FNS(SFC_DECLARE)
  bool ok() const { return handle != nullptr && error.empty(); }
};

// ---- cuBLASLt ---------------------------------------------------------------------------------
using cublasStatus_t = int;
using cublasLtHandle_t = void*;
using cublasLtMatmulDesc_t = void*;
using cublasLtMatrixLayout_t = void*;
using cublasLtMatmulPreference_t = void*;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
enum : int {
  CUBLAS_COMPUTE_32F = 68,
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17,
  CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18,
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUDA_R_32F = 0,
};

struct CublasLtApi {
  void* handle = nullptr;
  std::string path, error;
#define SFC_CUBLASLT_FNS(X)                                                                                        \
  X(cublasLtGetVersion, size_t (*)())                                                                            \
  X(cublasLtCreate, cublasStatus_t (*)(cublasLtHandle_t*))                                                       \
  X(cublasLtMatmulDescCreate, cublasStatus_t (*)(cublasLtMatmulDesc_t*, int, int))                               \
  X(cublasLtMatmulDescDestroy, cublasStatus_t (*)(cublasLtMatmulDesc_t))                                         \
  X(cublasLtMatmulDescSetAttribute, cublasStatus_t (*)(cublasLtMatmulDesc_t, int, const void*, size_t))          \
  X(cublasLtMatrixLayoutCreate, cublasStatus_t (*)(cublasLtMatrixLayout_t*, int, uint64_t, uint64_t, int64_t))   \
  X(cublasLtMatrixLayoutDestroy, cublasStatus_t (*)(cublasLtMatrixLayout_t))                                     \
  X(cublasLtMatmulPreferenceCreate, cublasStatus_t (*)(cublasLtMatmulPreference_t*))                             \
  X(cublasLtMatmulPreferenceDestroy, cublasStatus_t (*)(cublasLtMatmulPreference_t))                             \
  X(cublasLtMatmulPreferenceSetAttribute, cublasStatus_t (*)(cublasLtMatmulPreference_t, int, const void*, size_t)) \
  X(cublasLtMatmulAlgoGetHeuristic,                                                                              \
    cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,   \
                       cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int,          \
                       cublasLtMatmulHeuristicResult_t*, int*))                                                  \
  X(cublasLtMatmul,                                                                                              \
    cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void*, const void*, cublasLtMatrixLayout_t, \
                       const void*, cublasLtMatrixLayout_t, const void*, const void*, cublasLtMatrixLayout_t,    \
                       void*, cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t*, void*, size_t, CUstream))
  SFC_CUBLASLT_FNS(SFC_DECLARE)
  bool ok() const { return handle != nullptr && error.empty(); }
};

// ---- NCCL: communicators and the collectives sfc uses ------------------------------------------
typedef struct ncclComm* ncclComm_t;
struct NcclUniqueId {
  char internal[128];
};
struct NcclApi {
  void* handle = nullptr;
  std::string path, error;
  int (*ncclGetVersion)(int*) = nullptr;
  const char* (*ncclGetErrorString)(int) = nullptr;
  int (*ncclGetUniqueId)(NcclUniqueId*) = nullptr;
  int (*ncclCommInitRank)(ncclComm_t*, int, NcclUniqueId, int) = nullptr;
  int (*ncclCommInitAll)(ncclComm_t*, int, const int*) = nullptr;
  int (*ncclCommDestroy)(ncclComm_t) = nullptr;
  int (*ncclAllReduce)(const void*, void*, size_t, int, int, ncclComm_t, CUstream) = nullptr;
  int (*ncclBroadcast)(const void*, void*, size_t, int, int, ncclComm_t, CUstream) = nullptr;
  int (*ncclGroupStart)() = nullptr;
  int (*ncclGroupEnd)() = nullptr;
  bool ok() const { return handle != nullptr && error.empty(); }
};

// The loaded libraries (process-wide: dlopen handles are process-wide anyway).
DriverApi& driver();
NvrtcApi& nvrtc();
CublasLtApi& cublasLt();
NcclApi& nccl();

// Throws a JS-visible error naming the call and the CUDA error (see addon.cc).
[[noreturn]] void throwCuda(const char* call, CUresult r);
[[noreturn]] void throwCublas(const char* call, cublasStatus_t r);
inline void checkCu(const char* call, CUresult r) {
  if (r != 0) throwCuda(call, r);
}

}  // namespace sfc

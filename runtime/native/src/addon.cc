// The Node-API surface of the native runtime (see runtime/native/api.ts for the contract).
// Every exported function validates its JS arguments (TypeError/RangeError on mistakes), checks each
// CUDA return code (an Error naming the call and the CUDA error), and never lets a C++ exception or a
// bad pointer reach the process: device copies are checked against the table of live allocations.
#include <napi.h>

#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "libs.h"

namespace sfc {

// A CUDA-side failure, converted to a JS Error at the N-API boundary.
struct CudaFailure {
  std::string call, name, message;
  int code;
};

[[noreturn]] void throwCuda(const char* call, CUresult r) {
  const char* name = nullptr;
  const char* desc = nullptr;
  auto& d = driver();
  if (d.cuGetErrorName) d.cuGetErrorName(r, &name);
  if (d.cuGetErrorString) d.cuGetErrorString(r, &desc);
  throw CudaFailure{call, name ? name : "CUDA_ERROR_" + std::to_string(r), desc ? desc : "unknown error", r};
}

[[noreturn]] void throwCublas(const char* call, cublasStatus_t r) {
  static const std::map<int, const char*> names = {
      {1, "CUBLAS_STATUS_NOT_INITIALIZED"}, {3, "CUBLAS_STATUS_ALLOC_FAILED"},  {7, "CUBLAS_STATUS_INVALID_VALUE"},
      {8, "CUBLAS_STATUS_ARCH_MISMATCH"},   {11, "CUBLAS_STATUS_MAPPING_ERROR"}, {13, "CUBLAS_STATUS_EXECUTION_FAILED"},
      {14, "CUBLAS_STATUS_INTERNAL_ERROR"}, {15, "CUBLAS_STATUS_NOT_SUPPORTED"}, {16, "CUBLAS_STATUS_LICENSE_ERROR"}};
  auto it = names.find(r);
  throw CudaFailure{call, it != names.end() ? it->second : "CUBLAS_STATUS_" + std::to_string(r), "cuBLASLt call failed", r};
}

namespace {

// ---- argument helpers -------------------------------------------------------------------------
[[noreturn]] void typeError(const Napi::Env& env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void rangeError(const Napi::Env& env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

double numArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) typeError(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

// A non-negative integer below 2^53 (pointers, sizes, handles).
uint64_t u64Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  double v = numArg(info, i, what);
  if (!(v >= 0) || v > 9007199254740991.0 || std::floor(v) != v)
    rangeError(info.Env(), std::string(what) + " must be a non-negative integer, got " + std::to_string(v));
  return static_cast<uint64_t>(v);
}

template <typename T>
T* handleArg(const Napi::CallbackInfo& info, size_t i, const char* what, bool allowNull = false) {
  uint64_t v = u64Arg(info, i, what);
  if (!v && !allowNull) rangeError(info.Env(), std::string(what) + " is null (destroyed or never created?)");
  return reinterpret_cast<T*>(static_cast<uintptr_t>(v));
}

CUstream streamArg(const Napi::CallbackInfo& info, size_t i) { return handleArg<CUstream_st>(info, i, "stream", true); }

Napi::Number ptrValue(const Napi::Env& env, const void* p) {
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(p)));
}

std::array<unsigned, 3> dim3Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsArray()) typeError(info.Env(), std::string(what) + " must be [x, y, z]");
  auto a = info[i].As<Napi::Array>();
  if (a.Length() != 3) typeError(info.Env(), std::string(what) + " must have 3 entries");
  std::array<unsigned, 3> out{};
  for (uint32_t k = 0; k < 3; k++) {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1) || d > 2147483647.0 || std::floor(d) != d)
      rangeError(info.Env(), std::string(what) + "[" + std::to_string(k) + "] must be a positive integer");
    out[k] = static_cast<unsigned>(d);
  }
  return out;
}

struct Bytes {
  uint8_t* data;
  size_t size;
};

Bytes viewArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i) typeError(info.Env(), std::string(what) + " is missing");
  Napi::Value v = info[i];
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
  }
  if (v.IsDataView()) {
    auto t = v.As<Napi::DataView>();
    return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
  }
  typeError(info.Env(), std::string(what) + " must be a typed array or DataView");
}

// ---- state ------------------------------------------------------------------------------------
struct State {
  bool initialized = false;
  std::vector<CUcontext> contexts;
  int current = -1;
  std::map<CUdeviceptr, size_t> live;  // device allocations: base -> bytes
  std::unordered_map<CUfunction, long long> paramBytes;
  cublasLtHandle_t lt = nullptr;
};
State& state() {
  static State s;
  return s;
}

void requireDriver(const Napi::Env& env) {
  auto& d = driver();
  if (!d.ok()) throw Napi::Error::New(env, "CUDA driver not available: " + d.error);
}

void requireInit(const Napi::Env& env) {
  requireDriver(env);
  if (!state().initialized) throw Napi::Error::New(env, "CUDA is not initialised (call init() first)");
}

// Checks that [ptr, ptr + bytes) lies inside one live allocation.
void checkRange(const Napi::Env& env, CUdeviceptr ptr, size_t bytes, const char* what) {
  auto& live = state().live;
  auto it = live.upper_bound(ptr);
  if (it != live.begin()) {
    --it;
    if (ptr >= it->first && ptr + bytes <= it->first + it->second && ptr + bytes >= ptr) return;
    if (ptr >= it->first && ptr < it->first + it->second)
      rangeError(env, std::string(what) + ": " + std::to_string(bytes) + " bytes at offset " +
                          std::to_string(ptr - it->first) + " run past the end of a " + std::to_string(it->second) +
                          "-byte allocation");
  }
  rangeError(env, std::string(what) + ": address is not inside a live device allocation (freed or foreign?)");
}

// ---- status -----------------------------------------------------------------------------------
Napi::Object libStatus(Napi::Env env, bool ok, const std::string& path, const std::string& error) {
  auto o = Napi::Object::New(env);
  o.Set("loaded", ok);
  if (ok) o.Set("path", path);
  else o.Set("error", error);
  return o;
}

Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  auto& d = driver();
  auto cuda = libStatus(env, d.ok(), d.path, d.error);
  if (d.ok()) {
    int v = 0;
    if (d.cuDriverGetVersion(&v) == 0) cuda.Set("version", v);
    CUresult r = d.cuInit(0);
    if (r != 0) {
      const char* name = nullptr;
      d.cuGetErrorName(r, &name);
      cuda.Set("loaded", false);
      cuda.Set("error", std::string("cuInit failed: ") + (name ? name : std::to_string(r)));
    } else {
      int n = 0;
      if (d.cuDeviceGetCount(&n) == 0) cuda.Set("deviceCount", n);
    }
  }
  out.Set("cuda", cuda);
  auto& n = nvrtc();
  auto nv = libStatus(env, n.ok(), n.path, n.error);
  if (n.ok()) {
    int maj = 0, min = 0;
    n.nvrtcVersion(&maj, &min);
    auto arr = Napi::Array::New(env, 2);
    arr.Set(0u, maj);
    arr.Set(1u, min);
    nv.Set("version", arr);
  }
  out.Set("nvrtc", nv);
  auto& l = cublasLt();
  auto lt = libStatus(env, l.ok(), l.path, l.error);
  if (l.ok()) lt.Set("version", static_cast<double>(l.cublasLtGetVersion()));
  out.Set("cublasLt", lt);
  auto& c = nccl();
  auto nc = libStatus(env, c.ok(), c.path, c.error);
  if (c.ok()) {
    int v = 0;
    if (c.ncclGetVersion(&v) == 0) nc.Set("version", v);
  }
  out.Set("nccl", nc);
  return out;
}

// ---- devices and contexts ---------------------------------------------------------------------
void Init(const Napi::CallbackInfo& info) {
  requireDriver(info.Env());
  auto& s = state();
  if (s.initialized) return;
  auto& d = driver();
  checkCu("cuInit", d.cuInit(0));
  int n = 0;
  checkCu("cuDeviceGetCount", d.cuDeviceGetCount(&n));
  if (n == 0) throw CudaFailure{"cuDeviceGetCount", "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected", 100};
  for (int i = 0; i < n; i++) {
    CUdevice dev;
    checkCu("cuDeviceGet", d.cuDeviceGet(&dev, i));
    CUcontext ctx;
    checkCu("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&ctx, dev));
    s.contexts.push_back(ctx);
  }
  checkCu("cuCtxSetCurrent", d.cuCtxSetCurrent(s.contexts[0]));
  s.current = 0;
  s.initialized = true;
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(state().contexts.size()));
}

int ordinalArg(const Napi::CallbackInfo& info, size_t i) {
  uint64_t o = u64Arg(info, i, "device ordinal");
  if (o >= state().contexts.size())
    rangeError(info.Env(), "device " + std::to_string(o) + " does not exist (" + std::to_string(state().contexts.size()) + " found)");
  return static_cast<int>(o);
}

Napi::Value GetDeviceInfo(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  int ord = ordinalArg(info, 0);
  auto& d = driver();
  CUdevice dev;
  checkCu("cuDeviceGet", d.cuDeviceGet(&dev, ord));
  char name[256] = {0};
  checkCu("cuDeviceGetName", d.cuDeviceGetName(name, sizeof(name) - 1, dev));
  char bus[64] = {0};
  checkCu("cuDeviceGetPCIBusId", d.cuDeviceGetPCIBusId(bus, sizeof(bus) - 1, dev));
  size_t total = 0;
  checkCu("cuDeviceTotalMem", d.cuDeviceTotalMem_v2(&total, dev));
  auto attr = [&](int a) {
    int v = 0;
    checkCu("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a, dev));
    return v;
  };
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("ordinal", ord);
  o.Set("name", std::string(name));
  auto cc = Napi::Array::New(env, 2);
  cc.Set(0u, attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR));
  cc.Set(1u, attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR));
  o.Set("computeCapability", cc);
  o.Set("multiprocessors", attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
  o.Set("totalMemory", static_cast<double>(total));
  o.Set("l2CacheBytes", attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE));
  o.Set("maxSharedMemoryPerBlockOptin", attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN));
  o.Set("maxSharedMemoryPerMultiprocessor", attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR));
  o.Set("clockKHz", attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE));
  o.Set("memoryClockKHz", attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE));
  o.Set("memoryBusWidthBits", attr(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH));
  o.Set("pciBusId", std::string(bus));
  return o;
}

void SetDevice(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  int ord = ordinalArg(info, 0);
  auto& s = state();
  if (s.current == ord) return;
  checkCu("cuCtxSetCurrent", driver().cuCtxSetCurrent(s.contexts[ord]));
  s.current = ord;
}

Napi::Value MemInfo(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  size_t free = 0, total = 0;
  checkCu("cuMemGetInfo", driver().cuMemGetInfo_v2(&free, &total));
  auto o = Napi::Object::New(info.Env());
  o.Set("free", static_cast<double>(free));
  o.Set("total", static_cast<double>(total));
  return o;
}

// ---- memory -----------------------------------------------------------------------------------
Napi::Value Malloc(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  uint64_t bytes = u64Arg(info, 0, "bytes");
  if (bytes == 0) rangeError(info.Env(), "cannot allocate 0 bytes");
  CUdeviceptr p = 0;
  checkCu("cuMemAlloc", driver().cuMemAlloc_v2(&p, bytes));
  state().live[p] = bytes;
  return Napi::Number::New(info.Env(), static_cast<double>(p));
}

void Free(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUdeviceptr p = u64Arg(info, 0, "pointer");
  auto& live = state().live;
  auto it = live.find(p);
  if (it == live.end()) rangeError(info.Env(), "free: not the base of a live device allocation (double free?)");
  live.erase(it);
  checkCu("cuMemFree", driver().cuMemFree_v2(p));
}

Napi::Value MallocHost(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  uint64_t bytes = u64Arg(info, 0, "bytes");
  if (bytes == 0) rangeError(info.Env(), "cannot allocate 0 bytes");
  void* p = nullptr;
  checkCu("cuMemAllocHost", driver().cuMemAllocHost_v2(&p, bytes));
  return Napi::ArrayBuffer::New(info.Env(), p, bytes, [](Napi::Env, void* data) { driver().cuMemFreeHost(data); });
}

void CopyHtoD(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUdeviceptr dst = u64Arg(info, 0, "dst");
  Bytes src = viewArg(info, 1, "src");
  CUstream s = streamArg(info, 2);
  if (!src.size) return;
  checkRange(info.Env(), dst, src.size, "copyHtoD dst");
  checkCu("cuMemcpyHtoDAsync", driver().cuMemcpyHtoDAsync_v2(dst, src.data, src.size, s));
}

void CopyDtoH(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  Bytes dst = viewArg(info, 0, "dst");
  CUdeviceptr src = u64Arg(info, 1, "src");
  CUstream s = streamArg(info, 2);
  if (!dst.size) return;
  checkRange(info.Env(), src, dst.size, "copyDtoH src");
  checkCu("cuMemcpyDtoHAsync", driver().cuMemcpyDtoHAsync_v2(dst.data, src, dst.size, s));
  // pageable destinations are written synchronously by the driver; wait so JS never reads early
  checkCu("cuStreamSynchronize", driver().cuStreamSynchronize(s));
}

void CopyDtoD(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUdeviceptr dst = u64Arg(info, 0, "dst"), src = u64Arg(info, 1, "src");
  uint64_t bytes = u64Arg(info, 2, "bytes");
  CUstream s = streamArg(info, 3);
  if (!bytes) return;
  checkRange(info.Env(), dst, bytes, "copyDtoD dst");
  checkRange(info.Env(), src, bytes, "copyDtoD src");
  checkCu("cuMemcpyDtoDAsync", driver().cuMemcpyDtoDAsync_v2(dst, src, bytes, s));
}

void MemsetD8(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUdeviceptr dst = u64Arg(info, 0, "dst");
  uint64_t value = u64Arg(info, 1, "value");
  uint64_t bytes = u64Arg(info, 2, "bytes");
  if (value > 255) rangeError(info.Env(), "memsetD8 value must be 0..255");
  if (!bytes) return;
  checkRange(info.Env(), dst, bytes, "memsetD8");
  checkCu("cuMemsetD8Async", driver().cuMemsetD8Async(dst, static_cast<unsigned char>(value), bytes, streamArg(info, 3)));
}

void MemsetD32(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUdeviceptr dst = u64Arg(info, 0, "dst");
  uint64_t value = u64Arg(info, 1, "value");
  uint64_t count = u64Arg(info, 2, "count");
  if (value > 0xffffffffull) rangeError(info.Env(), "memsetD32 value must fit in 32 bits");
  if (dst % 4) rangeError(info.Env(), "memsetD32 destination must be 4-byte aligned");
  if (!count) return;
  checkRange(info.Env(), dst, count * 4, "memsetD32");
  checkCu("cuMemsetD32Async", driver().cuMemsetD32Async(dst, static_cast<unsigned>(value), count, streamArg(info, 3)));
}

// ---- streams and events -----------------------------------------------------------------------
Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUstream s;
  checkCu("cuStreamCreate", driver().cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  return ptrValue(info.Env(), s);
}
void StreamDestroy(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuStreamDestroy", driver().cuStreamDestroy_v2(handleArg<CUstream_st>(info, 0, "stream")));
}
void StreamSynchronize(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuStreamSynchronize", driver().cuStreamSynchronize(streamArg(info, 0)));
}
Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  bool timing = info.Length() > 0 && info[0].ToBoolean();
  CUevent e;
  checkCu("cuEventCreate", driver().cuEventCreate(&e, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING));
  return ptrValue(info.Env(), e);
}
void EventDestroy(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuEventDestroy", driver().cuEventDestroy_v2(handleArg<CUevent_st>(info, 0, "event")));
}
void EventRecord(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuEventRecord", driver().cuEventRecord(handleArg<CUevent_st>(info, 0, "event"), streamArg(info, 1)));
}
void EventSynchronize(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuEventSynchronize", driver().cuEventSynchronize(handleArg<CUevent_st>(info, 0, "event")));
}
Napi::Value EventElapsedMs(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  float ms = 0;
  checkCu("cuEventElapsedTime", driver().cuEventElapsedTime(&ms, handleArg<CUevent_st>(info, 0, "start"),
                                                            handleArg<CUevent_st>(info, 1, "end")));
  return Napi::Number::New(info.Env(), ms);
}
void StreamWaitEvent(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuStreamWaitEvent", driver().cuStreamWaitEvent(streamArg(info, 0), handleArg<CUevent_st>(info, 1, "event"), 0));
}
void Synchronize(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuCtxSynchronize", driver().cuCtxSynchronize());
}

// ---- modules and launches ---------------------------------------------------------------------
Napi::Value ModuleLoad(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  Bytes image = viewArg(info, 0, "image");
  if (!image.size) rangeError(info.Env(), "module image is empty");
  // cuModuleLoadData reads PTX as a NUL-terminated string: copy with a terminator
  std::vector<uint8_t> buf(image.data, image.data + image.size);
  buf.push_back(0);
  CUmodule m;
  checkCu("cuModuleLoadData", driver().cuModuleLoadData(&m, buf.data()));
  return ptrValue(info.Env(), m);
}
void ModuleUnload(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuModuleUnload", driver().cuModuleUnload(handleArg<CUmod_st>(info, 0, "module")));
  // the driver may hand a later module's functions the same handles: forget what was cached per handle
  state().paramBytes.clear();
}
Napi::Value ModuleGetFunction(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto m = handleArg<CUmod_st>(info, 0, "module");
  if (info.Length() < 2 || !info[1].IsString()) typeError(info.Env(), "function name must be a string");
  std::string name = info[1].As<Napi::String>();
  CUfunction f;
  checkCu(("cuModuleGetFunction(" + name + ")").c_str(), driver().cuModuleGetFunction(&f, m, name.c_str()));
  return ptrValue(info.Env(), f);
}

long long paramBytesOf(CUfunction f) {
  auto& cache = state().paramBytes;
  auto it = cache.find(f);
  if (it != cache.end()) return it->second;
  long long total = -1;
  auto& d = driver();
  if (d.cuFuncGetParamInfo) {
    total = 0;
    for (size_t i = 0;; i++) {
      size_t off = 0, size = 0;
      if (d.cuFuncGetParamInfo(f, i, &off, &size) != 0) break;
      total = static_cast<long long>(off + size);
    }
  }
  cache[f] = total;
  return total;
}

// [[offset, size], ...] of a kernel's parameters as the driver lays them out, or null where the
// driver cannot tell (cuFuncGetParamInfo needs CUDA 12.4).
Napi::Value FunctionParams(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto f = handleArg<CUfunc_st>(info, 0, "function");
  auto& d = driver();
  if (!d.cuFuncGetParamInfo) return info.Env().Null();
  auto out = Napi::Array::New(info.Env());
  for (size_t i = 0;; i++) {
    size_t off = 0, size = 0;
    if (d.cuFuncGetParamInfo(f, i, &off, &size) != 0) break;
    auto pair = Napi::Array::New(info.Env(), 2);
    pair.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(off)));
    pair.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(size)));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

Napi::Value FunctionAttributes(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto f = handleArg<CUfunc_st>(info, 0, "function");
  auto attr = [&](int a) {
    int v = 0;
    checkCu("cuFuncGetAttribute", driver().cuFuncGetAttribute(&v, a, f));
    return v;
  };
  auto o = Napi::Object::New(info.Env());
  o.Set("registers", attr(CU_FUNC_ATTRIBUTE_NUM_REGS));
  o.Set("staticSharedBytes", attr(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES));
  o.Set("localBytes", attr(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES));
  o.Set("maxThreadsPerBlock", attr(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK));
  o.Set("paramBytes", static_cast<double>(paramBytesOf(f)));
  return o;
}

void SetMaxDynamicShared(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto f = handleArg<CUfunc_st>(info, 0, "function");
  uint64_t bytes = u64Arg(info, 1, "bytes");
  checkCu("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)",
          driver().cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int>(bytes)));
}

struct LaunchArgs {
  CUfunction fn;
  std::array<unsigned, 3> grid, block;
  unsigned shared;
  CUstream stream;
  Bytes params;
};

LaunchArgs launchArgs(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  LaunchArgs a{handleArg<CUfunc_st>(info, 0, "function"), dim3Arg(info, 1, "grid"), dim3Arg(info, 2, "block"),
               static_cast<unsigned>(u64Arg(info, 3, "sharedBytes")), streamArg(info, 4), viewArg(info, 5, "params")};
  if (static_cast<uint64_t>(a.block[0]) * a.block[1] * a.block[2] > 1024)
    rangeError(info.Env(), "block has more than 1024 threads");
  if (a.grid[1] > 65535 || a.grid[2] > 65535) rangeError(info.Env(), "grid y and z must be at most 65535");
  long long want = paramBytesOf(a.fn);
  if (want >= 0 && static_cast<long long>(a.params.size) != want)
    rangeError(info.Env(), "kernel expects " + std::to_string(want) + " bytes of parameters, got " +
                               std::to_string(a.params.size) + " (wrong argument count or types?)");
  return a;
}

void launchOnce(const LaunchArgs& a) {
  size_t size = a.params.size;
  void* extra[] = {reinterpret_cast<void*>(1), a.params.data, reinterpret_cast<void*>(2), &size, reinterpret_cast<void*>(0)};
  checkCu("cuLaunchKernel", driver().cuLaunchKernel(a.fn, a.grid[0], a.grid[1], a.grid[2], a.block[0], a.block[1],
                                                    a.block[2], a.shared, a.stream, nullptr, size ? extra : nullptr));
}

void Launch(const Napi::CallbackInfo& info) { launchOnce(launchArgs(info)); }

void LaunchRepeated(const Napi::CallbackInfo& info) {
  LaunchArgs a = launchArgs(info);
  uint64_t count = u64Arg(info, 6, "count");
  for (uint64_t i = 0; i < count; i++) launchOnce(a);
}

// ---- CUDA graphs ------------------------------------------------------------------------------
void CaptureBegin(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUstream s = handleArg<CUstream_st>(info, 0, "stream (capture needs a created stream, not the default one)");
  checkCu("cuStreamBeginCapture", driver().cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
}
Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  CUstream s = handleArg<CUstream_st>(info, 0, "stream");
  CUgraph g = nullptr;
  checkCu("cuStreamEndCapture", driver().cuStreamEndCapture(s, &g));
  CUgraphExec exec = nullptr;
  CUresult r = driver().cuGraphInstantiateWithFlags(&exec, g, 0);
  driver().cuGraphDestroy(g);
  checkCu("cuGraphInstantiate", r);
  return ptrValue(info.Env(), exec);
}
void GraphLaunch(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuGraphLaunch", driver().cuGraphLaunch(handleArg<CUgraphExec_st>(info, 0, "graph"), streamArg(info, 1)));
}
void GraphDestroy(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  checkCu("cuGraphExecDestroy", driver().cuGraphExecDestroy(handleArg<CUgraphExec_st>(info, 0, "graph")));
}

// ---- NVRTC ------------------------------------------------------------------------------------
Napi::Value NvrtcCompile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& n = nvrtc();
  if (!n.ok()) throw Napi::Error::New(env, "NVRTC not available: " + n.error);
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray())
    typeError(env, "nvrtcCompile(source: string, name: string, options: string[], wantCubin: boolean)");
  std::string src = info[0].As<Napi::String>(), name = info[1].As<Napi::String>();
  auto optArr = info[2].As<Napi::Array>();
  std::vector<std::string> opts;
  for (uint32_t i = 0; i < optArr.Length(); i++) {
    Napi::Value v = optArr.Get(i);
    if (!v.IsString()) typeError(env, "NVRTC options must be strings");
    opts.push_back(v.As<Napi::String>());
  }
  std::vector<const char*> optPtrs;
  for (auto& o : opts) optPtrs.push_back(o.c_str());
  bool wantCubin = info[3].ToBoolean();

  nvrtcProgram prog = nullptr;
  nvrtcResult r = n.nvrtcCreateProgram(&prog, src.c_str(), name.c_str(), 0, nullptr, nullptr);
  if (r != 0) throw Napi::Error::New(env, std::string("nvrtcCreateProgram failed: ") + n.nvrtcGetErrorString(r));
  struct Guard {
    NvrtcApi& n;
    nvrtcProgram& p;
    ~Guard() { n.nvrtcDestroyProgram(&p); }
  } guard{n, prog};
  nvrtcResult cr = n.nvrtcCompileProgram(prog, static_cast<int>(optPtrs.size()), optPtrs.data());
  size_t logSize = 0;
  n.nvrtcGetProgramLogSize(prog, &logSize);
  std::string log(logSize, '\0');
  if (logSize) n.nvrtcGetProgramLog(prog, log.data());
  while (!log.empty() && log.back() == '\0') log.pop_back();
  auto out = Napi::Object::New(env);
  out.Set("ok", cr == 0);
  out.Set("log", log);
  if (cr != 0) return out;
  if (wantCubin) {
    size_t size = 0;
    if ((r = n.nvrtcGetCUBINSize(prog, &size)) != 0)
      throw Napi::Error::New(env, std::string("nvrtcGetCUBINSize failed: ") + n.nvrtcGetErrorString(r));
    auto buf = Napi::Uint8Array::New(env, size);
    n.nvrtcGetCUBIN(prog, reinterpret_cast<char*>(buf.Data()));
    out.Set("binary", buf);
  } else {
    size_t size = 0;
    n.nvrtcGetPTXSize(prog, &size);
    std::string ptx(size, '\0');
    n.nvrtcGetPTX(prog, ptx.data());
    while (!ptx.empty() && ptx.back() == '\0') ptx.pop_back();
    out.Set("ptx", ptx);
  }
  return out;
}

// ---- cuBLASLt ---------------------------------------------------------------------------------
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

void checkLt(const char* call, cublasStatus_t r) {
  if (r != 0) throwCublas(call, r);
}

void Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  auto& l = cublasLt();
  if (!l.ok()) throw Napi::Error::New(env, "cuBLASLt not available: " + l.error);
  if (info.Length() < 1 || !info[0].IsObject()) typeError(env, "gemm(args) needs an object");
  auto o = info[0].As<Napi::Object>();
  auto num = [&](const char* k) {
    Napi::Value v = o.Get(k);
    if (!v.IsNumber()) typeError(env, std::string("gemm: ") + k + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto u = [&](const char* k) {
    double v = num(k);
    if (!(v >= 0) || std::floor(v) != v) rangeError(env, std::string("gemm: ") + k + " must be a non-negative integer");
    return static_cast<uint64_t>(v);
  };
  uint64_t m = u("m"), n = u("n"), k = u("k");
  int ta = static_cast<int>(u("typeA")), tb = static_cast<int>(u("typeB")), tc = static_cast<int>(u("typeC")),
      td = static_cast<int>(u("typeD"));
  uint64_t lda = u("lda"), ldb = u("ldb"), ldc = u("ldc"), ldd = u("ldd");
  bool transA = o.Get("transA").ToBoolean(), transB = o.Get("transB").ToBoolean();
  float alpha = static_cast<float>(num("alpha")), beta = static_cast<float>(num("beta"));
  CUdeviceptr A = u("a"), B = u("b"), C = u("c"), D = u("d"), aScale = u("aScale"), bScale = u("bScale"),
              ws = u("workspace");
  uint64_t wsBytes = u("workspaceBytes");
  CUstream stream = reinterpret_cast<CUstream>(static_cast<uintptr_t>(u("stream")));
  if (!m || !n || !k) rangeError(env, "gemm: m, n and k must be positive");

  auto& s = state();
  if (!s.lt) checkLt("cublasLtCreate", l.cublasLtCreate(&s.lt));
  static std::unordered_map<std::string, GemmPlan> plans;
  std::string key = std::to_string(s.current) + ":" + std::to_string(m) + "," + std::to_string(n) + "," + std::to_string(k) +
                    ":" + std::to_string(ta) + std::to_string(tb) + std::to_string(tc) + std::to_string(td) + ":" +
                    std::to_string(lda) + "," + std::to_string(ldb) + "," + std::to_string(ldc) + "," +
                    std::to_string(ldd) + ":" + (transA ? "T" : "N") + (transB ? "T" : "N") + ":" +
                    (aScale ? "s" : "-") + (bScale ? "s" : "-") + ":" + std::to_string(wsBytes);
  auto it = plans.find(key);
  if (it == plans.end()) {
    // Row-major D[m,n] = op(A) op(B) is column-major D^T[n,m] = op(B)^T op(A)^T: cuBLASLt's first
    // operand is our B, its second our A, each viewed column-major with the same leading dimension.
    GemmPlan p;
    checkLt("cublasLtMatmulDescCreate", l.cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    int opFirst = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opSecond = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    checkLt("cublasLtMatmulDescSetAttribute(TRANSA)",
            l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opFirst, sizeof(int)));
    checkLt("cublasLtMatmulDescSetAttribute(TRANSB)",
            l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opSecond, sizeof(int)));
    checkLt("cublasLtMatrixLayoutCreate(B)",
            l.cublasLtMatrixLayoutCreate(&p.b, tb, transB ? k : n, transB ? n : k, static_cast<int64_t>(ldb)));
    checkLt("cublasLtMatrixLayoutCreate(A)",
            l.cublasLtMatrixLayoutCreate(&p.a, ta, transA ? m : k, transA ? k : m, static_cast<int64_t>(lda)));
    checkLt("cublasLtMatrixLayoutCreate(C)", l.cublasLtMatrixLayoutCreate(&p.c, tc, n, m, static_cast<int64_t>(ldc)));
    checkLt("cublasLtMatrixLayoutCreate(D)", l.cublasLtMatrixLayoutCreate(&p.d, td, n, m, static_cast<int64_t>(ldd)));
    if (aScale || bScale) {
      // scales must be set before the heuristic query for FP8
      CUdeviceptr first = bScale, second = aScale;
      checkLt("cublasLtMatmulDescSetAttribute(A_SCALE)",
              l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &first, sizeof(first)));
      checkLt("cublasLtMatmulDescSetAttribute(B_SCALE)",
              l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &second, sizeof(second)));
    }
    cublasLtMatmulPreference_t pref;
    checkLt("cublasLtMatmulPreferenceCreate", l.cublasLtMatmulPreferenceCreate(&pref));
    l.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof(wsBytes));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    cublasStatus_t hr = l.cublasLtMatmulAlgoGetHeuristic(s.lt, p.desc, p.b, p.a, p.c, p.d, pref, 1, &res, &found);
    l.cublasLtMatmulPreferenceDestroy(pref);
    if (hr != 0 || found == 0) {
      l.cublasLtMatmulDescDestroy(p.desc);
      for (auto lay : {p.a, p.b, p.c, p.d}) l.cublasLtMatrixLayoutDestroy(lay);
      if (hr != 0) throwCublas("cublasLtMatmulAlgoGetHeuristic", hr);
      throw CudaFailure{"cublasLtMatmulAlgoGetHeuristic", "CUBLAS_STATUS_NOT_SUPPORTED",
                        "no cuBLASLt algorithm for this shape/dtype combination", 15};
    }
    p.algo = res.algo;
    it = plans.emplace(key, p).first;
  }
  GemmPlan& p = it->second;
  if (aScale || bScale) {
    CUdeviceptr first = bScale, second = aScale;
    l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &first, sizeof(first));
    l.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &second, sizeof(second));
  }
  checkLt("cublasLtMatmul", l.cublasLtMatmul(s.lt, p.desc, &alpha, reinterpret_cast<void*>(B), p.b,
                                             reinterpret_cast<void*>(A), p.a, &beta, reinterpret_cast<void*>(C), p.c,
                                             reinterpret_cast<void*>(D), p.d, &p.algo, reinterpret_cast<void*>(ws),
                                             wsBytes, stream));
}

// ---- registration -----------------------------------------------------------------------------
// Wraps a function so CudaFailure becomes a JS Error with {call, cudaError, code}.
template <typename R, R (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    if constexpr (std::is_void_v<R>) {
      F(info);
      return info.Env().Undefined();
    } else {
      return F(info);
    }
  } catch (const CudaFailure& f) {
    auto err = Napi::Error::New(info.Env(), f.call + " failed: " + f.name + " (" + f.message + ")");
    err.Value().Set("call", f.call);
    err.Value().Set("cudaError", f.name);
    err.Value().Set("code", f.code);
    throw err;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "host out of memory in the sfc native addon");
  }
}

// ---- TMA tensor maps ----------------------------------------------------------------------------
// cuTensorMapEncodeTiled: a 128-byte descriptor a kernel takes by value (__grid_constant__) for
// cp.async.bulk.tensor. Arguments: (dataType, address, dims[], strides in bytes[] (rank - 1),
// box[], swizzle, l2Promotion); element strides are 1, interleave none, out-of-bounds fill zeros.
std::vector<uint64_t> u64ListArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsArray()) typeError(info.Env(), std::string(what) + " must be an array");
  auto a = info[i].As<Napi::Array>();
  std::vector<uint64_t> out;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d)
      rangeError(info.Env(), std::string(what) + "[" + std::to_string(k) + "] must be a non-negative integer");
    out.push_back(static_cast<uint64_t>(d));
  }
  return out;
}

Napi::Value TensorMapEncodeTiled(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  int dataType = static_cast<int>(u64Arg(info, 0, "dataType"));
  uint64_t address = u64Arg(info, 1, "address");
  auto dims = u64ListArg(info, 2, "dims");
  auto strides = u64ListArg(info, 3, "strides");
  auto box64 = u64ListArg(info, 4, "box");
  int swizzle = static_cast<int>(u64Arg(info, 5, "swizzle"));
  int l2 = static_cast<int>(u64Arg(info, 6, "l2Promotion"));
  const size_t rank = dims.size();
  if (rank < 1 || rank > 5) rangeError(info.Env(), "a tensor map has 1 to 5 dimensions");
  if (strides.size() != rank - 1) rangeError(info.Env(), "tensor map strides need rank - 1 entries");
  if (box64.size() != rank) rangeError(info.Env(), "tensor map box needs one entry per dimension");
  std::vector<unsigned> box(box64.begin(), box64.end()), elementStrides(rank, 1);
  auto out = Napi::Uint8Array::New(info.Env(), 128);
  alignas(64) uint8_t map[128] = {};
  checkCu("cuTensorMapEncodeTiled",
          driver().cuTensorMapEncodeTiled(map, dataType, static_cast<unsigned>(rank), reinterpret_cast<void*>(address),
                                          dims.data(), strides.data(), box.data(), elementStrides.data(), 0, swizzle,
                                          l2, 0));
  std::memcpy(out.Data(), map, 128);
  return out;
}

// ---- NCCL -------------------------------------------------------------------------------------------
// Communicators are opaque handles (numbers). Collectives over several devices of this process are
// enqueued inside one ncclGroupStart/End, each on its device's stream; errors name the NCCL call.
NcclApi& ncclReady(const Napi::Env& env) {
  auto& n = nccl();
  if (!n.ok()) throw Napi::Error::New(env, "NCCL is not available: " + (n.error.empty() ? std::string("not loaded") : n.error));
  return n;
}

void checkNccl(const Napi::Env& env, const char* call, int r) {
  if (r == 0) return;
  auto& n = nccl();
  std::string msg = n.ncclGetErrorString ? n.ncclGetErrorString(r) : "error " + std::to_string(r);
  auto err = Napi::Error::New(env, std::string(call) + " failed: " + msg);
  err.Value().Set("call", call);
  err.Value().Set("ncclError", r);
  throw err;
}

std::vector<uint64_t> handles(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return u64ListArg(info, i, what);
}

Napi::Value NcclCommInitAll(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto& n = ncclReady(info.Env());
  auto devs = u64ListArg(info, 0, "devices");
  if (devs.empty()) rangeError(info.Env(), "ncclCommInitAll needs at least one device");
  std::vector<int> list(devs.begin(), devs.end());
  std::vector<ncclComm_t> comms(list.size());
  checkNccl(info.Env(), "ncclCommInitAll", n.ncclCommInitAll(comms.data(), static_cast<int>(list.size()), list.data()));
  auto out = Napi::Array::New(info.Env(), comms.size());
  for (size_t k = 0; k < comms.size(); k++)
    out.Set(static_cast<uint32_t>(k), Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(comms[k]))));
  return out;
}

Napi::Value NcclGetUniqueId(const Napi::CallbackInfo& info) {
  auto& n = ncclReady(info.Env());
  NcclUniqueId id;
  checkNccl(info.Env(), "ncclGetUniqueId", n.ncclGetUniqueId(&id));
  auto out = Napi::Uint8Array::New(info.Env(), sizeof(id));
  std::memcpy(out.Data(), &id, sizeof(id));
  return out;
}

Napi::Value NcclCommInitRank(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto& n = ncclReady(info.Env());
  int nranks = static_cast<int>(u64Arg(info, 0, "nranks"));
  Bytes idb = viewArg(info, 1, "id");
  int rank = static_cast<int>(u64Arg(info, 2, "rank"));
  if (idb.size != sizeof(NcclUniqueId)) rangeError(info.Env(), "an NCCL unique id is 128 bytes");
  NcclUniqueId id;
  std::memcpy(&id, idb.data, sizeof(id));
  ncclComm_t comm = nullptr;
  checkNccl(info.Env(), "ncclCommInitRank", n.ncclCommInitRank(&comm, nranks, id, rank));
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(comm)));
}

void NcclCommDestroy(const Napi::CallbackInfo& info) {
  auto& n = ncclReady(info.Env());
  checkNccl(info.Env(), "ncclCommDestroy", n.ncclCommDestroy(reinterpret_cast<ncclComm_t>(u64Arg(info, 0, "comm"))));
}

// (comms[], sends[], recvs[], count, dataType, opOrRoot, streams[], broadcast)
void NcclCollective(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto& n = ncclReady(info.Env());
  auto comms = handles(info, 0, "comms");
  auto sends = handles(info, 1, "sends");
  auto recvs = handles(info, 2, "recvs");
  uint64_t count = u64Arg(info, 3, "count");
  int dtype = static_cast<int>(u64Arg(info, 4, "dataType"));
  int opOrRoot = static_cast<int>(u64Arg(info, 5, "opOrRoot"));
  auto streams = handles(info, 6, "streams");
  bool broadcast = info.Length() > 7 && info[7].ToBoolean().Value();
  if (sends.size() != comms.size() || recvs.size() != comms.size() || streams.size() != comms.size())
    rangeError(info.Env(), "one send buffer, receive buffer and stream per communicator");
  checkNccl(info.Env(), "ncclGroupStart", n.ncclGroupStart());
  int failed = 0;
  const char* call = broadcast ? "ncclBroadcast" : "ncclAllReduce";
  for (size_t k = 0; k < comms.size() && failed == 0; k++) {
    auto comm = reinterpret_cast<ncclComm_t>(comms[k]);
    auto stream = reinterpret_cast<CUstream>(streams[k]);
    auto src = reinterpret_cast<const void*>(sends[k]);
    auto dst = reinterpret_cast<void*>(recvs[k]);
    failed = broadcast ? n.ncclBroadcast(src, dst, count, dtype, opOrRoot, comm, stream)
                       : n.ncclAllReduce(src, dst, count, dtype, opOrRoot, comm, stream);
  }
  int end = n.ncclGroupEnd();
  checkNccl(info.Env(), call, failed);
  checkNccl(info.Env(), "ncclGroupEnd", end);
}

#define SFC_FN(name, impl, R) exports.Set(name, Napi::Function::New(env, guarded<R, impl>, name))

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  SFC_FN("status", Status, Napi::Value);
  SFC_FN("init", Init, void);
  SFC_FN("deviceCount", DeviceCount, Napi::Value);
  SFC_FN("deviceInfo", GetDeviceInfo, Napi::Value);
  SFC_FN("setDevice", SetDevice, void);
  SFC_FN("memInfo", MemInfo, Napi::Value);
  SFC_FN("malloc", Malloc, Napi::Value);
  SFC_FN("free", Free, void);
  SFC_FN("mallocHost", MallocHost, Napi::Value);
  SFC_FN("copyHtoD", CopyHtoD, void);
  SFC_FN("copyDtoH", CopyDtoH, void);
  SFC_FN("copyDtoD", CopyDtoD, void);
  SFC_FN("memsetD8", MemsetD8, void);
  SFC_FN("memsetD32", MemsetD32, void);
  SFC_FN("streamCreate", StreamCreate, Napi::Value);
  SFC_FN("streamDestroy", StreamDestroy, void);
  SFC_FN("streamSynchronize", StreamSynchronize, void);
  SFC_FN("eventCreate", EventCreate, Napi::Value);
  SFC_FN("eventDestroy", EventDestroy, void);
  SFC_FN("eventRecord", EventRecord, void);
  SFC_FN("eventSynchronize", EventSynchronize, void);
  SFC_FN("eventElapsedMs", EventElapsedMs, Napi::Value);
  SFC_FN("streamWaitEvent", StreamWaitEvent, void);
  SFC_FN("synchronize", Synchronize, void);
  SFC_FN("moduleLoad", ModuleLoad, Napi::Value);
  SFC_FN("moduleUnload", ModuleUnload, void);
  SFC_FN("moduleGetFunction", ModuleGetFunction, Napi::Value);
  SFC_FN("functionAttributes", FunctionAttributes, Napi::Value);
  SFC_FN("functionParams", FunctionParams, Napi::Value);
  SFC_FN("setMaxDynamicShared", SetMaxDynamicShared, void);
  SFC_FN("launch", Launch, void);
  SFC_FN("launchRepeated", LaunchRepeated, void);
  SFC_FN("captureBegin", CaptureBegin, void);
  SFC_FN("captureEnd", CaptureEnd, Napi::Value);
  SFC_FN("graphLaunch", GraphLaunch, void);
  SFC_FN("graphDestroy", GraphDestroy, void);
  SFC_FN("nvrtcCompile", NvrtcCompile, Napi::Value);
  SFC_FN("gemm", Gemm, void);
  SFC_FN("tensorMapEncodeTiled", TensorMapEncodeTiled, Napi::Value);
  SFC_FN("ncclCommInitAll", NcclCommInitAll, Napi::Value);
  SFC_FN("ncclGetUniqueId", NcclGetUniqueId, Napi::Value);
  SFC_FN("ncclCommInitRank", NcclCommInitRank, Napi::Value);
  SFC_FN("ncclCommDestroy", NcclCommDestroy, void);
  SFC_FN("ncclCollective", NcclCollective, void);
  return exports;
}

}  // namespace
}  // namespace sfc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return sfc::InitModule(env, exports); }
NODE_API_MODULE(sfc_native, InitAddon)

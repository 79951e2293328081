// dlopen-based loading of the CUDA libraries. Each library is looked up by soname (newest first) on
// the normal loader path, then in $SFC_CUDA_LIB_DIR, $CUDA_HOME/lib64 and $CUDA_PATH/lib64. A missing
// library is not an error here: its status says why, and the calls that need it throw.
#include <dlfcn.h>

#include <cstdlib>
#include <vector>

#include "libs.h"

namespace sfc {
namespace {

std::vector<std::string> searchDirs() {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("SFC_CUDA_LIB_DIR")) dirs.push_back(d);
  for (const char* env : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* d = std::getenv(env)) {
      dirs.push_back(std::string(d) + "/lib64");
      dirs.push_back(std::string(d) + "/lib");
    }
  }
  return dirs;
}

// Tries each soname on the loader path, then in the search dirs. Returns the handle or nullptr
// with `error` set to the last dlerror().
void* openFirst(const std::vector<std::string>& sonames, std::string& path, std::string& error) {
  std::vector<std::string> candidates = sonames;
  for (const auto& dir : searchDirs())
    for (const auto& so : sonames) candidates.push_back(dir + "/" + so);
  for (const auto& c : candidates) {
    if (void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      path = c;
      error.clear();
      return h;
    }
    const char* e = dlerror();
    error = e ? e : ("cannot open " + c);
  }
  error = "none of " + [&] {
    std::string s;
    for (size_t i = 0; i < sonames.size(); i++) s += (i ? ", " : "") + sonames[i];
    return s;
  }() + " could be loaded (last error: " + error + ")";
  return nullptr;
}

template <typename Api, typename Fn>
void resolve(Api& api, const char* name, Fn& fn) {
  if (!api.handle) return;
  fn = reinterpret_cast<Fn>(dlsym(api.handle, name));
  if (!fn && api.error.empty()) api.error = std::string("symbol ") + name + " not found in " + api.path;
}

}  // namespace

DriverApi& driver() {
  static DriverApi api = [] {
    DriverApi a;
    a.handle = openFirst({"libcuda.so.1", "libcuda.so"}, a.path, a.error);
#define SFC_RESOLVE(name, type) resolve(a, #name, a.name);
    SFC_DRIVER_FNS(SFC_RESOLVE)
    if (a.handle) a.cuFuncGetParamInfo = reinterpret_cast<decltype(a.cuFuncGetParamInfo)>(dlsym(a.handle, "cuFuncGetParamInfo"));
    return a;
  }();
  return api;
}

NvrtcApi& nvrtc() {
  static NvrtcApi api = [] {
    NvrtcApi a;
    a.handle = openFirst({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}, a.path, a.error);
    SFC_NVRTC_FNS(SFC_RESOLVE)
    return a;
  }();
  return api;
}

CublasLtApi& cublasLt() {
  static CublasLtApi api = [] {
    CublasLtApi a;
    a.handle = openFirst({"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}, a.path, a.error);
    SFC_CUBLASLT_FNS(SFC_RESOLVE)
    return a;
  }();
  return api;
}

NcclApi& nccl() {
  static NcclApi api = [] {
    NcclApi a;
    a.handle = openFirst({"libnccl.so.2", "libnccl.so"}, a.path, a.error);
    resolve(a, "ncclGetVersion", a.ncclGetVersion);
    resolve(a, "ncclGetErrorString", a.ncclGetErrorString);
    resolve(a, "ncclGetUniqueId", a.ncclGetUniqueId);
    resolve(a, "ncclCommInitRank", a.ncclCommInitRank);
    resolve(a, "ncclCommInitAll", a.ncclCommInitAll);
    resolve(a, "ncclCommDestroy", a.ncclCommDestroy);
    resolve(a, "ncclAllReduce", a.ncclAllReduce);
    resolve(a, "ncclBroadcast", a.ncclBroadcast);
    resolve(a, "ncclGroupStart", a.ncclGroupStart);
    resolve(a, "ncclGroupEnd", a.ncclGroupEnd);
    return a;
  }();
  return api;
}

}  // namespace sfc

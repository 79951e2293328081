// Standalone timing harness for one generated sm_90a GEMM instantiation against cuBLASLt: bf16 in/out, or
// with -DLAB_FP8 e4m3 inputs (epilogue alpha = 1) and bf16 out.
// Build: nvcc -std=c++17 -arch=sm_90a -DKSRC='"gen/x.cu"' -DKNAME=entry gemm_lab.cu -lcuda -lcublasLt
// Run:   ./lab M N K smem persistent(0/1) bn [reps]   -> prints ours / cuBLASLt medians and max |diff|
#include <cuda.h>
#include <cuda_runtime.h>
#ifndef LAB_NO_CUBLAS
#include <cublasLt.h>
#include <cublas_v2.h>
#endif
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include KSRC
#ifndef LAB_BBOX
#define LAB_BBOX bn
#endif
#ifndef LAB_ABOX
#define LAB_ABOX 128
#endif
#ifdef LAB_FP8
#define ALPHA , 1.0f
#else
#define ALPHA
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); exit(1); } } while (0)
#define CL(x) do { cublasStatus_t s = (x); if (s) { printf("cublasLt %s: %d\n", #x, (int)s); exit(1); } } while (0)

static unsigned short f2bf(float f) { unsigned u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return u >> 16; }
static float bf2f(unsigned short b) { unsigned u = (unsigned)b << 16; float f; memcpy(&f, &u, 4); return f; }

static SfcTensorMap tmap(void* p, int rows, int cols, int boxRows, int boxCols, int l2, int sw = 3) {
  SfcTensorMap m;
  cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)cols * 2};
  cuuint32_t box[2] = {(cuuint32_t)boxCols, (cuuint32_t)boxRows}, es[2] = {1, 1};
  CUresult r = cuTensorMapEncodeTiled((CUtensorMap*)&m, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, p, dims, strides, box, es,
                                      CU_TENSOR_MAP_INTERLEAVE_NONE, (CUtensorMapSwizzle)sw,
                                      (CUtensorMapL2promotion)l2, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r) { printf("tensor map: %d\n", (int)r); exit(1); }
  return m;
}

template <typename F> static float timeMs(F f, int reps) {
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  for (int i = 0; i < 5; i++) f();
  std::vector<float> t;
  for (int r = 0; r < reps; r++) {
    CK(cudaEventRecord(a));
    for (int j = 0; j < 10; j++) f();
    CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b)); t.push_back(ms / 10);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  if (argc < 7) { printf("usage: M N K smem persistent bn [reps] [l2]\n"); return 2; }
  int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), smem = atoi(argv[4]), pers = atoi(argv[5]), bn = atoi(argv[6]);
  int reps = argc > 7 ? atoi(argv[7]) : 30, l2 = argc > 8 ? atoi(argv[8]) : 2;
  int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  unsigned st = 1;
  auto u = [&] { st = st * 1664525u + 1013904223u; return (st + 0.5f) / 4294967296.0f; };
#ifdef LAB_FP8
  const int eb = 1;  // e4m3 bytes: random sign, exponent 3..10 (2^-4 .. 2^3), mantissa (never NaN)
  std::vector<unsigned char> ha((size_t)M * K), hb((size_t)N * K);
  auto e4 = [&](int emax) { return (unsigned char)(((u() < 0.5f) << 7) | ((3 + (int)(u() * (emax - 2))) << 3) | (int)(u() * 8)); };
  for (auto& x : ha) x = e4(10);
  for (auto& x : hb) x = e4(6);
#else
  const int eb = 2;
  std::vector<unsigned short> ha((size_t)M * K), hb((size_t)N * K);
  for (auto& x : ha) x = f2bf(2 * u() - 1);
  for (auto& x : hb) x = f2bf((2 * u() - 1) / sqrtf((float)K));
#endif
  void *A, *B, *C, *D, *ws;
  CK(cudaMalloc(&A, ha.size() * eb)); CK(cudaMalloc(&B, hb.size() * eb));
  CK(cudaMalloc(&C, (size_t)M * N * 4)); CK(cudaMalloc(&D, (size_t)M * N * 2));
  size_t wsBytes = 32 << 20; CK(cudaMalloc(&ws, wsBytes));
  CK(cudaMemcpy(A, ha.data(), ha.size() * eb, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(B, hb.data(), hb.size() * eb, cudaMemcpyHostToDevice));
  SfcTensorMap tA = tmap(A, M, K * eb / 2, LAB_ABOX, 64, l2), tB = tmap(B, N, K * eb / 2, LAB_BBOX, 64, l2);
  CK(cudaFuncSetAttribute(KNAME, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int tilesM = (M + 127) / 128, tilesN = (N + bn - 1) / bn;
  #ifdef LAB_NFAST
  dim3 grid = pers ? dim3(std::min(sms, tilesM * tilesN)) : dim3(tilesN, tilesM);
#else
  dim3 grid = pers ? dim3(std::min(sms, tilesM * tilesN)) : dim3(tilesM, tilesN);
#endif
#if defined(LAB_COOP)
  SfcTensorMap tC = tmap(C, M, N, 64, 32, l2, 2);
  auto ours = [&] { KNAME<<<grid, 384, smem>>>(tA, tB, tC, (sfc_bf16*)C, M, N, K, N, 1 ALPHA); };
#elif defined(LAB_TMC)
  SfcTensorMap tC = tmap(C, M, N, LAB_TMC, bn, l2, 0);
  auto ours = [&] { KNAME<<<grid, 384, smem>>>(tA, tB, tC, (sfc_bf16*)C, M, N, K, N ALPHA); };
#else
  auto ours = [&] { KNAME<<<grid, 384, smem>>>(tA, tB, (sfc_bf16*)C, M, N, K, N ALPHA); };
#endif
#ifndef LAB_NO_CUBLAS
  // cuBLASLt: row-major C[M,N] = A[M,K] B[N,K]^T as column-major D[N,M] = B^T' ... (op(B)=T on [K,N] storage)
  cublasLtHandle_t lt; CL(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t desc; CL(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t tT = CUBLAS_OP_T, tN = CUBLAS_OP_N;
  CL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &tT, sizeof tT));
  CL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tN, sizeof tN));
  cublasLtMatrixLayout_t la, lb, lc;
#ifdef LAB_FP8
  const cudaDataType_t tin = CUDA_R_8F_E4M3;
#else
  const cudaDataType_t tin = CUDA_R_16BF;
#endif
  CL(cublasLtMatrixLayoutCreate(&la, tin, K, N, K));
  CL(cublasLtMatrixLayoutCreate(&lb, tin, K, M, K));
  CL(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
  cublasLtMatmulPreference_t pref; CL(cublasLtMatmulPreferenceCreate(&pref));
  CL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof wsBytes));
  cublasLtMatmulHeuristicResult_t res; int found = 0;
  CL(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &res, &found));
  float one = 1, zero = 0;
  auto cub = [&] { CL(cublasLtMatmul(lt, desc, &one, B, la, A, lb, &zero, D, lc, D, lc, &res.algo, ws, wsBytes, 0)); };
#else
  auto cub = [&] { CK(cudaMemcpyAsync(D, C, (size_t)M * N * 2, cudaMemcpyDeviceToDevice)); };
#endif
  CK(cudaMemset(C, 0xff, (size_t)M * N * 2));  // NaN poison
  ours(); cub(); CK(cudaDeviceSynchronize());
  std::vector<unsigned short> hc((size_t)M * N), hd((size_t)M * N);
  CK(cudaMemcpy(hc.data(), C, hc.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hd.data(), D, hd.size() * 2, cudaMemcpyDeviceToHost));
  double md = 0; size_t bad = 0;
  for (size_t i = 0; i < hc.size(); i++) {
    double d = fabs((double)bf2f(hc[i]) - bf2f(hd[i]));
    if (!(d <= 1e30)) bad++; else md = std::max(md, d);
  }
  float to = 0, tc = 0;
  std::vector<float> vo, vc;
  for (int r = 0; r < 3; r++) { vo.push_back(timeMs(ours, reps)); vc.push_back(timeMs(cub, reps)); }
  std::sort(vo.begin(), vo.end()); std::sort(vc.begin(), vc.end()); to = vo[1]; tc = vc[1];
  double fl = 2.0 * M * N * K;
#if !defined(LAB_NO_CUBLAS)
  if (getenv("LAB_ALGOS")) {
    // the heuristic's top 8 algorithms, each timed in alternation with ours; and cublasGemmEx (what
    // PyTorch's bf16 F.linear calls) for bf16
    cublasLtMatmulHeuristicResult_t all[8]; int nAll = 0;
    CL(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 8, all, &nAll));
    for (int i = 0; i < nAll; i++) {
      auto f = [&] { CL(cublasLtMatmul(lt, desc, &one, B, la, A, lb, &zero, D, lc, D, lc, &all[i].algo, ws, wsBytes, 0)); };
      float tf = timeMs(f, reps), to2 = timeMs(ours, reps);
      printf("  lt algo %d: %.2f us (%.0f TF), ours %.2f us in alternation\n", i, tf * 1e3, 2.0 * M * N * K / tf / 1e9, to2 * 1e3);
    }
#ifndef LAB_FP8
    cublasHandle_t h; cublasCreate(&h);
    auto g = [&] { cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, B, CUDA_R_16BF, K, A, CUDA_R_16BF, K, &zero, D, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT); };
    float tg = timeMs(g, reps), to3 = timeMs(ours, reps);
    printf("  cublasGemmEx: %.2f us (%.0f TF), ours %.2f us in alternation\n", tg * 1e3, 2.0 * M * N * K / tg / 1e9, to3 * 1e3);
#endif
  }
#endif
  printf("%-44s M%d N%d K%d grid %dx%d  ours %.2f us (%.0f TF)  cublasLt %.2f us (%.0f TF)  ratio %.3f  maxdiff %.3g nan %zu\n",
         STR(KNAME), M, N, K, grid.x, grid.y, to * 1e3, fl / to / 1e9, tc * 1e3, fl / tc / 1e9, tc / to, md, bad);
  return 0;
}

#!/bin/bash
# Lab run on the GPU machine: builds every variant in gen/ against the harness, times each at the
# given shapes, and reports the cuBLASLt kernel. usage: bench/lab/run.sh OUTDIR
cd "$(dirname "$0")"
OUT=${1:-/tmp/lab}; mkdir -p $OUT/bin
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv > $OUT/gpu.txt
sel() { [ -z "$VARIANTS" ] || [[ " $VARIANTS " == *" $1 "* ]]; }
while read id entry thr smem bn bk pers; do sel $id || continue
  ( nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -O3 -DKSRC="\"gen/$id.cu\"" -DKNAME=$entry $(grep -o "LAB_FLAGS:.*" gen/$id.cu | cut -d: -f2) gemm_lab.cu \
      -o $OUT/bin/$id -lcuda -lcublasLt -lcublas > $OUT/bin/$id.log 2>&1 || echo "BUILD FAIL $id" ) &
done < gen/variants.txt
wait
SHAPES=${SHAPES:-"4680,1536,1536 4680,1536,64 4680,1536,768"}
while read id entry thr smem bn bk pers; do sel $id || continue
  for s in $SHAPES; do IFS=, read M N K <<< "$s"
    [ -x $OUT/bin/$id ] && $OUT/bin/$id $M $N $K $smem $pers $bn 30 ${L2:-2} | sed "s/^/$id /" | tee -a $OUT/lab.txt
  done
done < gen/variants.txt

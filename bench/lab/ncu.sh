#!/bin/bash
# Nsight Compute's launch and speed-of-light sections of our kernel and cuBLASLt's (a lab binary's first
# two launches). usage: SHAPE="M N K" ./ncu.sh OUTDIR variant...   (binaries from run.sh in OUTDIR/bin)
OUT=$1; shift
read M N K <<< "${SHAPE:-4680 1536 1536}"
for id in "$@"; do read _ entry thr smem bn bk pers < <(grep "^$id " gen/variants.txt)
  ncu --clock-control none --cache-control none -c 2 --section LaunchStats --section SpeedOfLight ${SECTIONS} \
    $OUT/bin/$id $M $N $K $smem $pers $bn 3 > $OUT/ncu-$id-${M}x${N}x${K}.txt 2>&1
done

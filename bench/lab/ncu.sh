#!/bin/bash
# ncu of our kernel and cuBLASLt's (the first two launches of a lab binary): names, launch, speed of light.
OUT=$1; shift
for id in "$@"; do read _ entry thr smem bn bk pers < <(grep "^$id " gen/variants.txt)
  ncu --clock-control none --cache-control none -c 2 --section LaunchStats --section SpeedOfLight --section Occupancy \
    $OUT/bin/$id 4680 1536 1536 $smem $pers $bn 3 > $OUT/ncu-$id.txt 2>&1
done

// Reading machine code out of a cubin without NVIDIA's disassembler (this machine and CI have nvcc
// and ptxas but no cuobjdump / nvdisasm): the ELF section `.text.<kernel>` holds the kernel's 128-bit
// instructions; the low bits of each instruction's first 64-bit word are its opcode. The opcodes
// below were read off `cuobjdump -sass` listings of sfc's own kernels (CUDA 13.0, sm_90a) on the GPU
// machine: HGMMA 0x9f0 (A from shared memory) / 0xdf0 (A from registers), QGMMA 0x9f3, UTMALDG 0x5b4;
// the low 9 bits identify the instruction, the bits above select operand forms.

/** Instruction classes recognised in sm_90 machine code, by their low 9 opcode bits. */
export const SM90_OPCODES = { HGMMA: 0x1f0, QGMMA: 0x1f3, UTMALDG: 0x1b4 } as const;
export type Sm90Opcode = keyof typeof SM90_OPCODES;

/** The named sections of an ELF64 little-endian file. */
export function elfSections(elf: Uint8Array): Map<string, Uint8Array> {
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (elf.length < 64 || dv.getUint32(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1)
    throw new Error('not a little-endian ELF64 file (cubin)');
  const shoff = Number(dv.getBigUint64(0x28, true));
  const shentsize = dv.getUint16(0x3a, true);
  const shnum = dv.getUint16(0x3c, true);
  const shstrndx = dv.getUint16(0x3e, true);
  if (shoff + shnum * shentsize > elf.length) throw new Error('ELF section table out of bounds');
  const header = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      name: dv.getUint32(o, true),
      offset: Number(dv.getBigUint64(o + 24, true)),
      size: Number(dv.getBigUint64(o + 32, true)),
    };
  };
  const strtab = header(shstrndx);
  const nameAt = (off: number) => {
    let end = strtab.offset + off;
    while (end < elf.length && elf[end] !== 0) end++;
    return new TextDecoder().decode(elf.subarray(strtab.offset + off, end));
  };
  const out = new Map<string, Uint8Array>();
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (h.offset + h.size > elf.length) continue; // NOBITS sections (.bss, .nv.shared) have no bytes
    out.set(nameAt(h.name), elf.subarray(h.offset, h.offset + h.size));
  }
  return out;
}

/**
 * Instruction classes in sm_80 / sm_89 machine code, by their low 9 opcode bits: HMMA (mma.sync on
 * 16-bit inputs, 0x23c), the FP8 mma.sync of sm_89 (QMMA, 0x27a), LDSM (ldmatrix, 0x83b) and LDGSTS
 * (cp.async, 0xfae). Read off nvcc 13.0 cubins of the mma.sync GEMM (the counts match the
 * instructions the template issues) and checked against `cuobjdump -sass` on the GPU machine.
 */
export const SM80_OPCODES = { HMMA: 0x03c, QMMA: 0x07a, LDSM: 0x03b, LDGSTS: 0x1ae } as const;
export type Sm80Opcode = keyof typeof SM80_OPCODES;

/** How many instructions of each class of `table` the kernel's machine code holds. */
export function countOpcodes<T extends Record<string, number>>(
  cubin: Uint8Array,
  kernel: string,
  table: T,
): Record<keyof T, number> {
  const text = elfSections(cubin).get(`.text.${kernel}`);
  if (!text) throw new Error(`no machine code for kernel ${kernel} in the cubin`);
  const counts = Object.fromEntries(Object.keys(table).map((k) => [k, 0])) as Record<keyof T, number>;
  const dv = new DataView(text.buffer, text.byteOffset, text.byteLength);
  for (let o = 0; o + 16 <= text.length; o += 16) {
    const op = dv.getUint32(o, true) & 0x1ff;
    for (const [name, code] of Object.entries(table)) if (op === code) counts[name as keyof T]++;
  }
  return counts;
}

/** How many instructions of each known sm_90 class the kernel's machine code holds. */
export function countSm90Opcodes(cubin: Uint8Array, kernel: string): Record<Sm90Opcode, number> {
  return countOpcodes(cubin, kernel, SM90_OPCODES);
}

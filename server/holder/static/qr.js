// A small QR code encoder: byte mode, error correction M, versions 1 to 6 (up to 106 bytes).
// Enough for a gatescan pass (84 bytes, version 5) and a rotating pass (96 bytes, version 6),
// written from ISO/IEC 18004 so the holder's page needs nothing from outside the server.
// qrMatrix(bytes) -> array of rows of booleans (true = dark), without the quiet zone.
"use strict";

const QR_M = [
  // [data codewords per block, number of blocks, EC codewords per block], versions 1..6 at M
  null, [16, 1, 10], [28, 1, 16], [44, 1, 26], [32, 2, 18], [43, 2, 24], [27, 4, 16],
];
const QR_ALIGN = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34]];

// GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
const GF_EXP = new Uint8Array(512);
const GF_LOG = new Uint8Array(256);
(function () {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255];
})();

function gfMul(a, b) {
  return a === 0 || b === 0 ? 0 : GF_EXP[GF_LOG[a] + GF_LOG[b]];
}

function rsGenerator(degree) {
  // Coefficients of (x - a^0)(x - a^1)...(x - a^(degree-1)), highest power first.
  let poly = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(poly.length + 1).fill(0);
    for (let j = 0; j < poly.length; j++) {
      next[j] ^= poly[j];
      next[j + 1] ^= gfMul(poly[j], GF_EXP[i]);
    }
    poly = next;
  }
  return poly;
}

function rsRemainder(data, degree) {
  const gen = rsGenerator(degree);
  const rem = new Array(degree).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < degree; i++) rem[i] ^= gfMul(gen[i + 1], factor);
  }
  return rem;
}

function qrCodewords(bytes, version) {
  const [perBlock, blocks, ecPerBlock] = QR_M[version];
  const capacity = perBlock * blocks;
  const bits = [];
  const put = (value, length) => {
    for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  put(0b0100, 4); // byte mode
  put(bytes.length, 8); // versions 1-9 count bytes in 8 bits
  for (const byte of bytes) put(byte, 8);
  put(0, Math.min(4, capacity * 8 - bits.length)); // terminator
  while (bits.length % 8) bits.push(0);
  const data = [];
  for (let i = 0; i < bits.length; i += 8) {
    data.push(bits.slice(i, i + 8).reduce((acc, bit) => (acc << 1) | bit, 0));
  }
  for (let pad = 0; data.length < capacity; pad ^= 1) data.push(pad ? 0x11 : 0xec);
  const dataBlocks = [];
  const ecBlocks = [];
  for (let b = 0; b < blocks; b++) {
    const block = data.slice(b * perBlock, (b + 1) * perBlock);
    dataBlocks.push(block);
    ecBlocks.push(rsRemainder(block, ecPerBlock));
  }
  const out = [];
  for (let i = 0; i < perBlock; i++) for (const block of dataBlocks) out.push(block[i]);
  for (let i = 0; i < ecPerBlock; i++) for (const block of ecBlocks) out.push(block[i]);
  return out;
}

function qrVersionFor(length) {
  for (let version = 1; version < QR_M.length; version++) {
    const [perBlock, blocks] = QR_M[version];
    if (length <= perBlock * blocks - 2) return version; // 4 bits mode + 8 bits count, rounded
  }
  throw new Error("too long for this encoder (at most 106 bytes)");
}

const QR_MASKS = [
  (x, y) => (x + y) % 2 === 0,
  (x, y) => y % 2 === 0,
  (x, y) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

function qrBase(version) {
  const size = 17 + 4 * version;
  const dark = Array.from({ length: size }, () => new Array(size).fill(false));
  const fixed = Array.from({ length: size }, () => new Array(size).fill(false));
  const set = (x, y, value) => {
    dark[y][x] = value;
    fixed[y][x] = true;
  };
  for (let i = 0; i < size; i++) {
    set(6, i, i % 2 === 0); // timing patterns
    set(i, 6, i % 2 === 0);
  }
  for (const [cx, cy] of [[3, 3], [size - 4, 3], [3, size - 4]]) {
    for (let dy = -4; dy <= 4; dy++) {
      for (let dx = -4; dx <= 4; dx++) {
        const x = cx + dx;
        const y = cy + dy;
        if (x < 0 || y < 0 || x >= size || y >= size) continue;
        const ring = Math.max(Math.abs(dx), Math.abs(dy));
        set(x, y, ring !== 2 && ring !== 4); // finder, and its light separator
      }
    }
  }
  const align = QR_ALIGN[version];
  for (const cx of align) {
    for (const cy of align) {
      const onFinder = (cx === 6 && cy === 6) || (cx === 6 && cy === size - 7) ||
        (cx === size - 7 && cy === 6);
      if (onFinder) continue;
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
      }
    }
  }
  // Format areas (written per mask later) and the dark module.
  for (let i = 0; i < 9; i++) {
    fixed[8][i] = fixed[i][8] = true;
  }
  for (let i = 0; i < 8; i++) {
    fixed[8][size - 1 - i] = fixed[size - 1 - i][8] = true;
  }
  set(8, size - 8, true);
  return { size, dark, fixed };
}

function qrPlace(base, codewords) {
  const { size, fixed } = base;
  const dark = base.dark.map((row) => row.slice());
  let bit = 0;
  const total = codewords.length * 8;
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5; // the vertical timing pattern takes column 6
    const upward = ((right + 1) & 2) === 0;
    for (let step = 0; step < size; step++) {
      const y = upward ? size - 1 - step : step;
      for (let j = 0; j < 2; j++) {
        const x = right - j;
        if (fixed[y][x]) continue;
        dark[y][x] = bit < total && ((codewords[bit >>> 3] >>> (7 - (bit & 7))) & 1) === 1;
        bit++;
      }
    }
  }
  return dark;
}

function qrFormatBits(mask) {
  const data = (0b00 << 3) | mask; // level M is 00
  let rem = data;
  for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  return ((data << 10) | rem) ^ 0x5412;
}

function qrApplyMask(base, placed, mask) {
  const { size, fixed } = base;
  const dark = placed.map((row) => row.slice());
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (!fixed[y][x] && QR_MASKS[mask](x, y)) dark[y][x] = !dark[y][x];
    }
  }
  const bits = qrFormatBits(mask);
  const on = (i) => ((bits >>> i) & 1) === 1;
  for (let i = 0; i <= 5; i++) dark[i][8] = on(i);
  dark[7][8] = on(6);
  dark[8][8] = on(7);
  dark[8][7] = on(8);
  for (let i = 9; i < 15; i++) dark[8][14 - i] = on(i);
  for (let i = 0; i < 8; i++) dark[8][size - 1 - i] = on(i);
  for (let i = 8; i < 15; i++) dark[size - 15 + i][8] = on(i);
  dark[size - 8][8] = true;
  return dark;
}

function qrPenalty(dark) {
  const size = dark.length;
  let score = 0;
  const lines = [];
  for (let i = 0; i < size; i++) {
    lines.push(dark[i]);
    lines.push(dark.map((row) => row[i]));
  }
  const finderLike = [true, false, true, true, true, false, true];
  for (const line of lines) {
    let run = 1;
    for (let i = 1; i <= size; i++) {
      if (i < size && line[i] === line[i - 1]) {
        run++;
      } else {
        if (run >= 5) score += 3 + (run - 5);
        run = 1;
      }
    }
    for (let i = 0; i + 7 <= size; i++) {
      if (!finderLike.every((value, k) => line[i + k] === value)) continue;
      const lightBefore = i >= 4 && [1, 2, 3, 4].every((k) => !line[i - k]);
      const lightAfter = i + 11 <= size && [7, 8, 9, 10].every((k) => !line[i + k]);
      if (lightBefore || lightAfter) score += 40;
    }
  }
  let darkCount = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (dark[y][x]) darkCount++;
      if (y + 1 < size && x + 1 < size) {
        const v = dark[y][x];
        if (dark[y][x + 1] === v && dark[y + 1][x] === v && dark[y + 1][x + 1] === v) score += 3;
      }
    }
  }
  score += 10 * Math.floor(Math.abs((darkCount * 100) / (size * size) - 50) / 5);
  return score;
}

function qrMatrix(bytes) {
  const version = qrVersionFor(bytes.length);
  const base = qrBase(version);
  const placed = qrPlace(base, qrCodewords(bytes, version));
  let best = null;
  for (let mask = 0; mask < 8; mask++) {
    const candidate = qrApplyMask(base, placed, mask);
    const penalty = qrPenalty(candidate);
    if (best === null || penalty < best.penalty) best = { penalty, matrix: candidate };
  }
  return best.matrix;
}

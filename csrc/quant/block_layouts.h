// Packed block layouts of the GGML quantized formats (a fact of the GGUF file format).
// Internal to quant/. Every field is a byte array or a little-endian 16/32-bit value at its
// natural alignment, so the structs have no padding; the static_asserts pin the sizes to the
// type table in gguf/ggml_types.cpp.
//
// Source buffers handed to us need not be aligned, so code never casts a raw pointer to
// these structs: it memcpy's one block into a local struct (and out again when writing).
//
// Element order inside a block (i = element index within the block):
//   Q4_0/Q4_1:  qs[j] low nibble = element j, high nibble = element j+16.
//   Q5_0/Q5_1:  as Q4, plus bit i of the little-endian 32-bit qh = bit 4 of element i.
//   Q8_0:       qs[i] = element i (int8).
//   Q2_K:       16 sub-blocks of 16; scales[j] low nibble = scale, high nibble = min.
//               Element i = 128*h + 32*s + l takes bits 2s..2s+1 of qs[32*h + l].
//   Q3_K:       16 sub-blocks of 16; 6-bit signed (offset 32) scales packed in 12 bytes.
//               Element i = 128*h + 32*s + l: low 2 bits = bits 2s.. of qs[32*h + l];
//               hmask[l] bit (i / 32) set means "no -4 offset".
//   Q4_K/Q5_K:  8 sub-blocks of 32; 6-bit scale and min per sub-block packed in 12 bytes.
//               Element i = 64*c + 32*h + l is nibble h of qs[32*c + l]; (Q5_K) its 5th bit
//               is bit (i / 32) of qh[l].
//   Q6_K:       16 sub-blocks of 16; int8 scale per sub-block. Element i = 128*h + r:
//               low 4 bits = nibble (r / 64) of ql[64*h + r % 64];
//               high 2 bits = bits 2*(r / 32).. of qh[32*h + r % 32]; value = q - 32.
//   Q8_K:       float d, int8 qs[256], int16 bsums[16] (sums of 16-element groups).
#pragma once
#include <cstdint>

namespace unigemma::quant {

constexpr int kQK = 32;    // legacy block size
constexpr int kQKK = 256;  // K-quant super-block size

struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
struct BlockQ2_K {
    uint8_t scales[kQKK / 16];
    uint8_t qs[kQKK / 4];
    uint16_t d;
    uint16_t dmin;
};
struct BlockQ3_K {
    uint8_t hmask[kQKK / 8];
    uint8_t qs[kQKK / 4];
    uint8_t scales[12];
    uint16_t d;
};
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQKK / 8];
    uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
    uint8_t ql[kQKK / 2];
    uint8_t qh[kQKK / 4];
    int8_t scales[kQKK / 16];
    uint16_t d;
};
struct BlockQ8_K {
    float d;
    int8_t qs[kQKK];
    int16_t bsums[kQKK / 16];
};

static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block size");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block size");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block size");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block size");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block size");
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block size");
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block size");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block size");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block size");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block size");
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block size");

// The 12-byte scale/min packing shared by Q4_K and Q5_K: eight 6-bit scales sc[] and eight
// 6-bit mins m[]. Bytes 0-3 hold sc[0..3] (low 6 bits) and the top 2 bits of sc[4..7];
// bytes 4-7 the same for m[]; bytes 8-11 hold the low nibbles of sc[4..7] | m[4..7] << 4.
inline void unpack_scale_min_k4(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 2) & 0x30));
        m[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
    }
}

inline void pack_scale_min_k4(const uint8_t* sc, const uint8_t* m, uint8_t* s) {
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4));
    }
}

}  // namespace unigemma::quant

#pragma once
// Counter-based randomness. Every random choice in the data pipeline (which split a document
// goes to, which windows a step trains on) is a pure function of (seed, counters), so it is
// identical on every rank, every platform and every restart, and needs no RNG state to be
// checkpointed. std:: distributions are not used: their output differs between libraries.
#include <cstdint>

namespace some::data {

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hash of a tuple of counters; chaining (instead of xor-ing all at once) keeps (a, b) and
// (b, a) apart.
constexpr uint64_t hash_u64(uint64_t a, uint64_t b) { return splitmix64(splitmix64(a) ^ b); }
constexpr uint64_t hash_u64(uint64_t a, uint64_t b, uint64_t c) {
  return splitmix64(hash_u64(a, b) ^ c);
}

// Uniform in [0, 1) from the top 53 bits.
constexpr double to_unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Uniform in [0, n) by multiply-high (Lemire): no modulo, bias below n / 2^64.
constexpr uint64_t to_range(uint64_t h, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * n) >> 64);
}

}  // namespace some::data

#pragma once
// The one source of deterministic randomness. Every random choice outside LibTorch's seeded
// generators — which split a document goes to, which windows a step trains on, the hash
// router's table, the per-expert generator seeds, the dead-key restart — is a pure function of
// (seed, counters): identical on every rank, every platform and every restart, with no RNG state
// to checkpoint. std:: distributions are not used: their output differs between libraries.
#include <cstdint>

namespace some {

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hash of a tuple of counters: splitmix64(...splitmix64(splitmix64(a) ^ b) ^ c ...). Chaining
// (instead of xor-ing all at once) keeps (a, b) and (b, a) apart.
constexpr uint64_t hash_u64(uint64_t a) { return splitmix64(a); }
template <typename... Rest>
constexpr uint64_t hash_u64(uint64_t a, uint64_t b, Rest... rest) {
  return hash_u64(splitmix64(a) ^ b, static_cast<uint64_t>(rest)...);
}

// Uniform in [0, 1) from the top 53 bits.
constexpr double to_unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Uniform in [0, n) by multiply-high (Lemire): no modulo, bias below n / 2^64.
constexpr uint64_t to_range(uint64_t h, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * n) >> 64);
}

}  // namespace some

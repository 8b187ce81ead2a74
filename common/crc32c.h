#pragma once
// CRC-32C (Castagnoli), the checksum of TFRecord framing (TensorBoard event files).
#include <cstdint>
#include <string_view>

namespace some {

uint32_t crc32c(std::string_view bytes);
// TFRecord stores CRCs rotated and offset, so that a CRC of data that itself holds CRCs is
// not degenerate: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(std::string_view bytes);

}  // namespace some

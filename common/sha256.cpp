#include "common/sha256.h"

#include <cstdio>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "common/check.h"
#include "common/errors.h"

namespace some {
namespace {

using Ctx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

Ctx new_ctx() {
  Ctx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  SOME_REQUIRE(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, Error,
               "OpenSSL: cannot initialise a SHA-256 digest");
  return ctx;
}

std::string finish_hex(EVP_MD_CTX* ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  SOME_REQUIRE(EVP_DigestFinal_ex(ctx, digest, &len) == 1, Error, "OpenSSL: SHA-256 final failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * len, '\0');
  for (unsigned int i = 0; i < len; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

std::string sha256_bytes(std::string_view bytes) {
  Ctx ctx = new_ctx();
  SOME_REQUIRE(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1, Error,
               "OpenSSL: SHA-256 update failed");
  return finish_hex(ctx.get());
}

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  SOME_REQUIRE(f != nullptr, DataError, "cannot open '{}' to compute its SHA-256", path);
  Ctx ctx = new_ctx();
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    SOME_REQUIRE(EVP_DigestUpdate(ctx.get(), buf.data(), n) == 1, Error,
                 "OpenSSL: SHA-256 update failed");
  }
  SOME_REQUIRE(!std::ferror(f.get()), DataError, "read error in '{}' while computing its SHA-256",
               path);
  return finish_hex(ctx.get());
}

}  // namespace some

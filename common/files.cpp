#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "common/errors.h"

namespace some {

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  SOME_REQUIRE(fd >= 0, DataError, "cannot open '{}' to sync it", path);
  int rc = ::fsync(fd);
  ::close(fd);
  SOME_REQUIRE(rc == 0, DataError, "fsync of '{}' failed (disk full?)", path);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const auto tmp = path + ".tmp";
  try {
    {
      std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
      SOME_REQUIRE(out.is_open(), DataError, "cannot create '{}'", tmp);
      out << text;
      out.flush();
      SOME_REQUIRE(out.good(), DataError, "cannot write '{}' (disk full?)", tmp);
    }
    fsync_path(tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    SOME_REQUIRE(!ec, DataError, "cannot rename '{}' to '{}': {}", tmp, path, ec.message());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

}  // namespace some

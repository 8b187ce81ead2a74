#pragma once
// Rate and ETA for long work (prepare, train, eval): "1.2k tok/s, ETA 3m05s".
#include <chrono>
#include <cstdint>
#include <string>

namespace some {

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"
std::string format_count(double n);           // "1.23M", "45.6k", "789"
std::string format_bytes(double bytes);       // "1.50 GiB", "12.3 MiB", "512 B"

class Progress {
 public:
  explicit Progress(double total) : total_(total), start_(Clock::now()) {}
  double elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double rate(double done) const { return done / std::max(elapsed_s(), 1e-9); }
  // Seconds left at the average rate so far; negative when unknown.
  double eta_s(double done) const { return done > 0 ? (total_ - done) / rate(done) : -1.0; }
  std::string eta(double done) const {
    double s = eta_s(done);
    return s < 0 ? "?" : format_duration(s);
  }

 private:
  using Clock = std::chrono::steady_clock;
  double total_;
  Clock::time_point start_;
};

}  // namespace some

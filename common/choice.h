#pragma once
// Choice-valued options. Each is an enum whose names live in one table beside it:
//   enum class QueryNet { kLinear, kMlp };
//   template <> struct Choices<QueryNet> {
//     static constexpr Choice<QueryNet> values[] = {{"linear", QueryNet::kLinear}, {"mlp", QueryNet::kMlp}};
//   };
// and everything else comes from that table: parsing a config value (a ConfigError naming the
// key, the value and the choices), the name written to TOML, logs and errors, and the list of
// allowed values in docs/config.md. Library code compares enums, never strings.
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/errors.h"

namespace some {

template <typename Enum>
struct Choice {
  std::string_view name;
  Enum value;
};

template <typename Enum>
struct Choices;  // specialised beside each enum: static constexpr Choice<Enum> values[]

template <typename Enum>
std::vector<std::string> choice_names() {
  std::vector<std::string> out;
  for (const auto& c : Choices<Enum>::values) out.emplace_back(c.name);
  return out;
}

template <typename Enum>
std::string choice_name(Enum value) {
  for (const auto& c : Choices<Enum>::values) {
    if (c.value == value) return std::string(c.name);
  }
  return fmt::format("<{}?>", static_cast<int>(value));
}

// `value` of option `key` as its enum; a ConfigError naming both and the choices otherwise.
template <typename Enum>
Enum parse_choice(std::string_view key, std::string_view value) {
  std::string names;
  for (const auto& c : Choices<Enum>::values) {
    if (c.name == value) return c.value;
    names += (names.empty() ? "" : ", ") + std::string(c.name);
  }
  throw ConfigError(fmt::format("{} = '{}' is not one of {}", key, value, names));
}

}  // namespace some

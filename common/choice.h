#pragma once
// Choice-valued options. Each is an enum whose names live in one table beside it:
//   enum class QueryNet { kLinear, kMlp };
//   template <> struct Choices<QueryNet> {
//     static constexpr Choice<QueryNet> values[] = {{"linear", QueryNet::kLinear}, {"mlp", QueryNet::kMlp}};
//   };
// and everything else comes from that table: parsing a config value (a ConfigError naming the
// key, the value and the choices), the name written to TOML, logs and errors, and the list of
// allowed values in docs/config.md. Library code compares enums, never strings.
#include <optional>
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

// The enum named `name`; nullopt when it is none of the names.
template <typename Enum>
std::optional<Enum> find_choice(std::string_view name) {
  for (const auto& c : Choices<Enum>::values) {
    if (c.name == name) return c.value;
  }
  return std::nullopt;
}

// `value` of option `key` as its enum; a ConfigError naming both and the choices otherwise.
template <typename Enum>
Enum parse_choice(std::string_view key, std::string_view value) {
  if (auto found = find_choice<Enum>(value)) return *found;
  std::string names;
  for (const auto& name : choice_names<Enum>()) names += (names.empty() ? "" : ", ") + name;
  throw ConfigError(fmt::format("{} = '{}' is not one of {}", key, value, names));
}

}  // namespace some

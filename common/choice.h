#pragma once
// An option's string value parsed into its enum once, where it is first needed, instead of
// string comparisons on every forward; a value outside the choices is a ConfigError naming the
// key, the value and the choices.
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "common/errors.h"

namespace some {

template <typename Enum>
Enum parse_choice(std::string_view key, const std::string& value,
                  std::initializer_list<std::pair<std::string_view, Enum>> choices) {
  std::string names;
  for (const auto& [name, choice] : choices) {
    if (name == value) return choice;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  throw ConfigError(fmt::format("{} = '{}' is not one of {}", key, value, names));
}

}  // namespace some

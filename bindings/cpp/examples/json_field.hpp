// json_field.hpp: just enough JSON for the example and the tests, which have no JSON
// library: quote a string, and read the first string or integer field of a given name
// from a rill event (events are flat enough that the first "key": is the one meant, e.g.
// "type", "delta", "text", "sequence_number", "status"). A real host uses its own JSON
// library on the event strings instead.
#ifndef RILL_EXAMPLES_JSON_FIELD_HPP
#define RILL_EXAMPLES_JSON_FIELD_HPP

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace json_field {

// `s` as a JSON string literal, quotes included.
inline std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

namespace detail {
// Where the value of the first `"key":` starts, or npos.
inline std::size_t value_at(std::string_view json, std::string_view key) {
  std::string needle = quote(key) + ":";
  std::size_t at = json.find(needle);
  return at == std::string_view::npos ? at : at + needle.size();
}

inline void put_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline std::optional<std::uint32_t> hex4(std::string_view s, std::size_t at) {
  if (at + 4 > s.size()) return std::nullopt;
  std::uint32_t v = 0;
  for (std::size_t i = at; i < at + 4; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v * 16 + static_cast<std::uint32_t>(d);
  }
  return v;
}
}  // namespace detail

// The unescaped value of the first string field `key`; nullopt if absent or not a string.
inline std::optional<std::string> string(std::string_view json, std::string_view key) {
  std::size_t i = detail::value_at(json, key);
  if (i >= json.size() || json[i] != '"') return std::nullopt;
  std::string out;
  for (i++; i < json.size(); i++) {
    char c = json[i];
    if (c == '"') return out;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= json.size()) return std::nullopt;
    switch (json[i]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'u': {
        auto cp = detail::hex4(json, i + 1);
        if (!cp) return std::nullopt;
        i += 4;
        if (*cp >= 0xD800 && *cp < 0xDC00 && json.substr(i + 1, 2) == "\\u") {
          auto lo = detail::hex4(json, i + 3);
          if (!lo || *lo < 0xDC00 || *lo >= 0xE000) return std::nullopt;
          cp = 0x10000 + ((*cp - 0xD800) << 10) + (*lo - 0xDC00);
          i += 6;
        }
        detail::put_utf8(out, *cp);
        break;
      }
      default: out += json[i];  // \" \\ \/
    }
  }
  return std::nullopt;
}

// The value of the first integer field `key`; nullopt if absent or not an integer.
inline std::optional<long long> integer(std::string_view json, std::string_view key) {
  std::size_t i = detail::value_at(json, key);
  if (i >= json.size()) return std::nullopt;
  std::string digits(json.substr(i, 24));
  char* end = nullptr;
  long long v = std::strtoll(digits.c_str(), &end, 10);
  return end == digits.c_str() ? std::nullopt : std::optional<long long>(v);
}

}  // namespace json_field

#endif  // RILL_EXAMPLES_JSON_FIELD_HPP

#include "usage_report.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

namespace sealfs::cli {
namespace {

// 128-bit integers (a GCC extension, hence __extension__ under -Wpedantic) hold
// byte*ns exactly and let time arithmetic check for overflow.
__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

constexpr int64_t kSingleSampleHoldNs = 60 * kNsPerSecond;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

// Division rounding towards minus infinity, so that times before the epoch
// fall into the right period too. b > 0.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b < 0) --q;
  return q;
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > kU64Max - b ? kU64Max : a + b; }

// Growth of a cumulative counter; a drop means it was reset to zero since.
uint64_t Growth(uint64_t previous, uint64_t current) {
  return current >= previous ? current - previous : current;
}

// b - a for a <= b, computed in uint64 so that no int64 range can overflow.
uint64_t Span(int64_t a, int64_t b) { return static_cast<uint64_t>(b) - static_cast<uint64_t>(a); }

// How long the last sample's values hold at most: 2 x the median positive gap.
uint64_t TailHoldNs(const std::vector<UsageSample>& samples) {
  std::vector<uint64_t> gaps;
  for (size_t i = 1; i < samples.size(); ++i) {
    if (samples[i].time_ns > samples[i - 1].time_ns) {
      gaps.push_back(Span(samples[i - 1].time_ns, samples[i].time_ns));
    }
  }
  if (gaps.empty()) return kSingleSampleHoldNs;
  std::sort(gaps.begin(), gaps.end());
  size_t mid = gaps.size() / 2;
  uint64_t median = gaps[mid];
  if (gaps.size() % 2 == 0) median = gaps[mid - 1] + (gaps[mid] - gaps[mid - 1]) / 2;
  return median > kU64Max / 2 ? kU64Max : 2 * median;
}

int64_t SaturatingAddTime(int64_t t, uint64_t duration) {
  uint64_t room = Span(t, kI64Max);
  return duration >= room ? kI64Max : static_cast<int64_t>(static_cast<uint64_t>(t) + duration);
}

double ToHours(UInt128 value_ns, long double unit) {
  return static_cast<double>(static_cast<long double>(value_ns) / unit /
                             static_cast<long double>(kNsPerHour));
}

}  // namespace

std::vector<UsageRow> Integrate(const VolumeSamples& volume, int64_t from_ns, int64_t to_ns,
                                int64_t period_ns) {
  std::vector<UsageRow> rows;
  if (from_ns >= to_ns) return rows;
  for (int64_t start = from_ns; start < to_ns;) {
    int64_t end = to_ns;
    if (period_ns > 0) {
      Int128 next = static_cast<Int128>(FloorDiv(start, period_ns) + 1) * period_ns;
      if (next < end) end = static_cast<int64_t>(next);
    }
    UsageRow row;
    row.volume = volume.volume;
    row.tenant = volume.tenant;
    row.from_ns = start;
    row.to_ns = end;
    rows.push_back(std::move(row));
    start = end;
  }
  // Index of the row holding t, for from <= t < to.
  auto period_of = [&](int64_t t) -> size_t {
    if (period_ns <= 0) return 0;
    return static_cast<size_t>(FloorDiv(t, period_ns) - FloorDiv(from_ns, period_ns));
  };
  auto in_range = [&](int64_t t) { return t >= from_ns && t < to_ns; };

  const std::vector<UsageSample>* samples = &volume.samples;
  std::vector<UsageSample> sorted;
  auto by_time = [](const UsageSample& a, const UsageSample& b) { return a.time_ns < b.time_ns; };
  if (!std::is_sorted(samples->begin(), samples->end(), by_time)) {
    sorted = *samples;
    std::stable_sort(sorted.begin(), sorted.end(), by_time);
    samples = &sorted;
  }
  const std::vector<UsageSample>& s = *samples;
  if (s.empty()) return rows;

  // byte*ns of a whole range is below 2^64 * 2^64: no overflow in 128 bits.
  std::vector<UInt128> byte_ns(rows.size()), inode_ns(rows.size());
  const uint64_t tail_hold = TailHoldNs(s);
  for (size_t i = 0; i < s.size(); ++i) {
    const UsageSample& sample = s[i];
    if (in_range(sample.time_ns)) {
      UsageRow& row = rows[period_of(sample.time_ns)];
      row.peak_bytes = std::max(row.peak_bytes, sample.used_bytes);
      if (i > 0) {
        const UsageSample& prev = s[i - 1];
        row.bytes_read = SaturatingAdd(row.bytes_read, Growth(prev.bytes_read, sample.bytes_read));
        row.bytes_written =
            SaturatingAdd(row.bytes_written, Growth(prev.bytes_written, sample.bytes_written));
        row.read_ops = SaturatingAdd(row.read_ops, Growth(prev.read_ops, sample.read_ops));
        row.write_ops = SaturatingAdd(row.write_ops, Growth(prev.write_ops, sample.write_ops));
      }
    }
    // The step [time, next time) clipped to [from, to), spread over its periods.
    int64_t end =
        i + 1 < s.size() ? s[i + 1].time_ns : SaturatingAddTime(sample.time_ns, tail_hold);
    int64_t start = std::max(sample.time_ns, from_ns);
    end = std::min(end, to_ns);
    if (start >= end) continue;
    for (size_t p = period_of(start); p < rows.size() && rows[p].from_ns < end; ++p) {
      UsageRow& row = rows[p];
      uint64_t overlap = Span(std::max(start, row.from_ns), std::min(end, row.to_ns));
      byte_ns[p] += static_cast<UInt128>(sample.used_bytes) * overlap;
      inode_ns[p] += static_cast<UInt128>(sample.used_inodes) * overlap;
      row.peak_bytes = std::max(row.peak_bytes, sample.used_bytes);
    }
  }
  for (size_t p = 0; p < rows.size(); ++p) {
    rows[p].gib_hours = ToHours(byte_ns[p], 1073741824.0L);
    rows[p].inode_hours = ToHours(inode_ns[p], 1.0L);
  }
  return rows;
}

std::vector<UsageRow> TotalsByTenant(const std::vector<UsageRow>& rows) {
  std::map<std::tuple<std::string, int64_t, int64_t>, UsageRow> totals;
  for (const UsageRow& row : rows) {
    auto [it, inserted] = totals.try_emplace({row.tenant, row.from_ns, row.to_ns});
    UsageRow& total = it->second;
    if (inserted) {
      total.volume = "*";
      total.tenant = row.tenant;
      total.from_ns = row.from_ns;
      total.to_ns = row.to_ns;
    }
    total.gib_hours += row.gib_hours;
    total.peak_bytes = SaturatingAdd(total.peak_bytes, row.peak_bytes);
    total.inode_hours += row.inode_hours;
    total.bytes_read = SaturatingAdd(total.bytes_read, row.bytes_read);
    total.bytes_written = SaturatingAdd(total.bytes_written, row.bytes_written);
    total.read_ops = SaturatingAdd(total.read_ops, row.read_ops);
    total.write_ops = SaturatingAdd(total.write_ops, row.write_ops);
  }
  std::vector<UsageRow> out;
  out.reserve(totals.size());
  for (auto& [key, total] : totals) out.push_back(std::move(total));
  return out;
}

// ---- Formatting ----

std::string FormatUtcTime(int64_t time_ns) {
  int64_t seconds = FloorDiv(time_ns, kNsPerSecond);
  int64_t nanos = time_ns - seconds * kNsPerSecond;
  int64_t days = FloorDiv(seconds, 86400);
  int64_t of_day = seconds - days * 86400;
  std::chrono::year_month_day date{std::chrono::sys_days{std::chrono::days{days}}};
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", int{date.year()},
                        unsigned{date.month()}, unsigned{date.day()}, int(of_day / 3600),
                        int(of_day / 60 % 60), int(of_day % 60));
  if (nanos != 0) {
    n += std::snprintf(buf + n, sizeof buf - n, ".%09" PRId64, nanos);
  }
  std::snprintf(buf + n, sizeof buf - n, "Z");
  return buf;
}

namespace {

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  long double value = bytes;
  size_t unit = 0;
  value /= 1024;
  // Step up also where one decimal would round to 1024.0.
  while (value >= 1023.95L && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1Lf %s", value, kUnits[unit]);
  return buf;
}

std::string Fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

// Names come from users: keep a terminal's control sequences out of a table.
std::string Printable(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text;
}

// The shortest text that parses back to the same double.
std::string ShortestDouble(double value) {
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, result.ptr);
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

}  // namespace

std::string FormatTable(const std::vector<UsageRow>& rows) {
  // Columns from kFirstNumeric on are numbers: right-aligned.
  constexpr size_t kFirstNumeric = 4;
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"TENANT", "VOLUME", "FROM", "TO", "GIB-HOURS", "PEAK", "INODE-HOURS", "READ",
                   "WRITTEN", "READ-OPS", "WRITE-OPS"});
  for (const UsageRow& row : rows) {
    cells.push_back({Printable(row.tenant), Printable(row.volume), FormatUtcTime(row.from_ns),
                     FormatUtcTime(row.to_ns), Fixed(row.gib_hours, 3), FormatBytes(row.peak_bytes),
                     Fixed(row.inode_hours, 1), FormatBytes(row.bytes_read),
                     FormatBytes(row.bytes_written), std::to_string(row.read_ops),
                     std::to_string(row.write_ops)});
  }
  std::vector<size_t> widths(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], line[c].size());
  }
  std::string out;
  for (const auto& line : cells) {
    for (size_t c = 0; c < line.size(); ++c) {
      if (c > 0) out += "  ";
      std::string pad(widths[c] - line[c].size(), ' ');
      out += c >= kFirstNumeric ? pad + line[c] : line[c] + pad;
    }
    out += '\n';
  }
  return out;
}

std::string FormatJson(const std::vector<UsageRow>& rows) {
  using Json = nlohmann::ordered_json;
  Json array = Json::array();
  for (const UsageRow& row : rows) {
    Json object;
    object["tenant"] = row.tenant;
    object["volume"] = row.volume;
    object["from"] = FormatUtcTime(row.from_ns);
    object["to"] = FormatUtcTime(row.to_ns);
    object["gib_hours"] = row.gib_hours;
    object["peak_bytes"] = row.peak_bytes;
    object["inode_hours"] = row.inode_hours;
    object["bytes_read"] = row.bytes_read;
    object["bytes_written"] = row.bytes_written;
    object["read_ops"] = row.read_ops;
    object["write_ops"] = row.write_ops;
    array.push_back(std::move(object));
  }
  // A name that is not UTF-8 must not make the whole report throw.
  return array.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string FormatCsv(const std::vector<UsageRow>& rows) {
  std::string out =
      "tenant,volume,from,to,gib_hours,peak_bytes,inode_hours,bytes_read,bytes_written,read_ops,"
      "write_ops\r\n";
  for (const UsageRow& row : rows) {
    const std::string fields[] = {CsvField(row.tenant),
                                  CsvField(row.volume),
                                  FormatUtcTime(row.from_ns),
                                  FormatUtcTime(row.to_ns),
                                  ShortestDouble(row.gib_hours),
                                  std::to_string(row.peak_bytes),
                                  ShortestDouble(row.inode_hours),
                                  std::to_string(row.bytes_read),
                                  std::to_string(row.bytes_written),
                                  std::to_string(row.read_ops),
                                  std::to_string(row.write_ops)};
    for (size_t i = 0; i < std::size(fields); ++i) {
      if (i > 0) out += ',';
      out += fields[i];
    }
    out += "\r\n";
  }
  return out;
}

// ---- Time arguments ----

namespace {

Status InvalidTime(std::string_view text) {
  return Status::Error(EINVAL, "invalid time \"" + std::string(text) +
                                   "\": expected now, -<n>{s,m,h,d} or "
                                   "YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM]");
}

Status OutOfRange(std::string_view text) {
  return Status::Error(ERANGE, "time \"" + std::string(text) + "\" is out of range");
}

// Reads exactly `count` digits at `pos`.
bool Digits(std::string_view text, size_t& pos, size_t count, int& out) {
  if (pos + count > text.size()) return false;
  out = 0;
  for (size_t i = 0; i < count; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += count;
  return true;
}

bool Expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

Result<int64_t> ParseRelative(std::string_view text, int64_t now_ns) {
  // "-<digits><unit>"; at most 18 digits so that the count fits in int64.
  std::string_view body = text.substr(1);
  if (body.size() < 2 || body.size() > 19) return InvalidTime(text);
  int64_t count = 0;
  for (char c : body.substr(0, body.size() - 1)) {
    if (c < '0' || c > '9') return InvalidTime(text);
    count = count * 10 + (c - '0');
  }
  int64_t unit = 0;
  switch (body.back()) {
    case 's':
      unit = kNsPerSecond;
      break;
    case 'm':
      unit = 60 * kNsPerSecond;
      break;
    case 'h':
      unit = kNsPerHour;
      break;
    case 'd':
      unit = kNsPerDay;
      break;
    default:
      return InvalidTime(text);
  }
  Int128 result = static_cast<Int128>(now_ns) - static_cast<Int128>(count) * unit;
  if (result < kI64Min) return OutOfRange(text);
  return static_cast<int64_t>(result);
}

Result<int64_t> ParseAbsolute(std::string_view text) {
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  int64_t nanos = 0, offset_seconds = 0;
  if (!Digits(text, pos, 4, year) || !Expect(text, pos, '-') || !Digits(text, pos, 2, month) ||
      !Expect(text, pos, '-') || !Digits(text, pos, 2, day)) {
    return InvalidTime(text);
  }
  if (pos < text.size() && (text[pos] == 'T' || text[pos] == 't' || text[pos] == ' ')) {
    ++pos;
    if (!Digits(text, pos, 2, hour) || !Expect(text, pos, ':') || !Digits(text, pos, 2, minute)) {
      return InvalidTime(text);
    }
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!Digits(text, pos, 2, second)) return InvalidTime(text);
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        size_t first = pos;
        int64_t scale = kNsPerSecond;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
          if (pos - first == 9) return InvalidTime(text);  // finer than ns
          scale /= 10;
          nanos += (text[pos] - '0') * scale;
          ++pos;
        }
        if (pos == first) return InvalidTime(text);
      }
    }
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
      int sign = text[pos] == '+' ? 1 : -1;
      ++pos;
      int offset_hours = 0, offset_minutes = 0;
      if (!Digits(text, pos, 2, offset_hours) || !Expect(text, pos, ':') ||
          !Digits(text, pos, 2, offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
        return InvalidTime(text);
      }
      offset_seconds = sign * (offset_hours * 3600 + offset_minutes * 60);
    } else if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
      ++pos;
    }
  } else if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  }
  if (pos != text.size()) return InvalidTime(text);
  std::chrono::year_month_day date{std::chrono::year{year},
                                   std::chrono::month{static_cast<unsigned>(month)},
                                   std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 59) return InvalidTime(text);
  int64_t days = std::chrono::sys_days{date}.time_since_epoch().count();
  int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  Int128 ns = static_cast<Int128>(seconds) * kNsPerSecond + nanos;
  if (ns < kI64Min || ns > kI64Max) return OutOfRange(text);
  return static_cast<int64_t>(ns);
}

}  // namespace

Result<int64_t> ParseTimeArgument(std::string_view text, int64_t now_ns) {
  if (text == "now") return now_ns;
  if (!text.empty() && text[0] == '-') return ParseRelative(text, now_ns);
  return ParseAbsolute(text);
}

}  // namespace sealfs::cli

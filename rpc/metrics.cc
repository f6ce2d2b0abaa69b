#include "sealfs/rpc/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace sealfs::metrics {

struct Registry::Family {
  std::string_view type;  // one of the k*Type literals below
  std::string help;
  std::vector<double> bounds;  // histograms only
  // Keyed by labels sorted by name, so the maps' order is the render order.
  // Only the map of the family's type is used.
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;
};

namespace {

// Misuse of the registry is a programming error: say what and stop.
[[noreturn]] void Die(std::string_view metric, std::string_view problem) {
  std::fprintf(stderr, "metrics: '%.*s': %.*s\n", static_cast<int>(metric.size()), metric.data(),
               static_cast<int>(problem.size()), problem.data());
  std::abort();
}

constexpr std::string_view kCounterType = "counter";
constexpr std::string_view kGaugeType = "gauge";
constexpr std::string_view kHistogramType = "histogram";

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsMetricName(std::string_view name) {
  if (name.empty() || IsDigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return IsAlpha(c) || IsDigit(c) || c == ':'; });
}

// [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are Prometheus' own.
bool IsLabelName(std::string_view name) {
  if (name.empty() || IsDigit(name[0]) || name.starts_with("__")) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsAlpha(c) || IsDigit(c); });
}

// The series key: labels sorted by name, checked.
Labels Normalize(std::string_view metric, const Labels& labels, bool histogram) {
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const std::string& name = sorted[i].first;
    if (!IsLabelName(name)) {
      Die(metric, "invalid label name '" + name + "'");
    }
    if (histogram && name == "le") {
      Die(metric, "'le' is the histogram's own label");
    }
    if (i > 0 && sorted[i - 1].first == name) {
      Die(metric, "label '" + name + "' given twice");
    }
  }
  return sorted;
}

template <typename T, typename Make>
T& SeriesIn(std::map<Labels, std::unique_ptr<T>>& series, Labels labels, const Make& make) {
  auto it = series.find(labels);
  if (it == series.end()) it = series.emplace(std::move(labels), std::unique_ptr<T>(make())).first;
  return *it->second;
}

// The shortest digits that parse back to the same double, laid out as Go's
// strconv.FormatFloat(v, 'g', -1, 64) does, which is what the Go client (and
// so most exporters) print: 0.0001, 400000, 5e-05, 1.1e+07. Matching it keeps
// `le` label values the same strings other exporters use.
std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  char* end =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific).ptr;
  const char* e = std::find(buffer, end, 'e') + 1;  // e+05, e-05: never bare digits
  int exponent = 0;
  std::from_chars(e + 1, end, exponent);
  if (*e == '-') exponent = -exponent;
  if (exponent < -4 || exponent >= 6) return std::string(buffer, end);
  end = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed).ptr;
  return std::string(buffer, end);
}

std::string FormatInteger(uint64_t value) {
  char buffer[24];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, end);
}

void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// {a="1",b="2"}, with `le` last when given; nothing for no labels.
void AppendLabels(std::string& out, const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return;
  out += '{';
  bool first = true;
  auto add = [&](std::string_view name, std::string_view value) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    AppendEscaped(out, value, /*quotes=*/true);
    out += '"';
  };
  for (const auto& [name, value] : labels) add(name, value);
  if (le != nullptr) add("le", *le);
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, std::string_view suffix,
                  const Labels& labels, const std::string& value, const std::string* le = nullptr) {
  out += name;
  out += suffix;
  AppendLabels(out, labels, le);
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // The first bucket whose bound is >= value. NaN goes to +Inf, as in the Go
  // client, since it compares false with every bound.
  size_t bucket = bounds_.size();
  if (!std::isnan(value)) {
    bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  }
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::FamilyFor(std::string_view name, std::string_view help,
                                      std::string_view type) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    if (!IsMetricName(name)) Die(name, "invalid metric name");
    auto family = std::make_unique<Family>();
    family->type = type;
    family->help = help;
    it = families_.emplace(std::string(name), std::move(family)).first;
  }
  Family& family = *it->second;
  if (family.type != type) {
    Die(name, std::string("is a ").append(family.type).append(", asked for as a ").append(type));
  }
  return family;
}

Counter& Registry::GetCounter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& family = FamilyFor(name, help, kCounterType);
  return SeriesIn<Counter>(family.counters, Normalize(name, labels, false),
                           [] { return new Counter(); });
}

Gauge& Registry::GetGauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& family = FamilyFor(name, help, kGaugeType);
  return SeriesIn<Gauge>(family.gauges, Normalize(name, labels, false), [] { return new Gauge(); });
}

Histogram& Registry::GetHistogram(std::string_view name, std::string_view help,
                                  const std::vector<double>& bounds, const Labels& labels) {
  // +Inf is always the last bucket; saying so explicitly changes nothing.
  std::vector<double> finite = bounds;
  if (!finite.empty() && finite.back() == std::numeric_limits<double>::infinity()) {
    finite.pop_back();
  }
  for (size_t i = 0; i < finite.size(); ++i) {
    if (!std::isfinite(finite[i]) || (i > 0 && !(finite[i - 1] < finite[i]))) {
      Die(name, "histogram bounds must be finite and strictly increasing");
    }
  }
  std::lock_guard lock(mutex_);
  Family& family = FamilyFor(name, help, kHistogramType);
  if (family.histograms.empty()) {
    family.bounds = std::move(finite);
  } else if (family.bounds != finite) {
    Die(name, "histogram asked for with other bounds than it has");
  }
  return SeriesIn<Histogram>(family.histograms, Normalize(name, labels, true),
                             [&] { return new Histogram(family.bounds); });
}

void Registry::AddCollector(std::function<void(Registry&)> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::Render() {
  std::lock_guard render(render_mutex_);
  // Collectors run unlocked, since they call Get*.
  std::vector<std::function<void(Registry&)>> collectors;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
  }
  for (const auto& collect : collectors) collect(*this);

  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    AppendEscaped(out, family->help, /*quotes=*/false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += family->type;
    out += '\n';
    for (const auto& [labels, counter] : family->counters) {
      AppendSample(out, name, "", labels, FormatInteger(counter->value()));
    }
    for (const auto& [labels, gauge] : family->gauges) {
      AppendSample(out, name, "", labels, FormatDouble(gauge->value()));
    }
    for (const auto& [labels, histogram] : family->histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= family->bounds.size(); ++i) {
        cumulative += histogram->buckets_[i].load(std::memory_order_relaxed);
        std::string le = i < family->bounds.size() ? FormatDouble(family->bounds[i]) : "+Inf";
        AppendSample(out, name, "_bucket", labels, FormatInteger(cumulative), &le);
      }
      AppendSample(out, name, "_sum", labels,
                   FormatDouble(histogram->sum_.load(std::memory_order_relaxed)));
      AppendSample(out, name, "_count", labels, FormatInteger(cumulative));
    }
  }
  return out;
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> kBuckets = {50e-6,  100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3,
                                               5e-3,   10e-3,  25e-3,  50e-3,  100e-3, 250e-3,
                                               500e-3, 1,      2.5,    5,      10};
  return kBuckets;
}

}  // namespace sealfs::metrics

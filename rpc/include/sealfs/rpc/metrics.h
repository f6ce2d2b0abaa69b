// Metrics: counters, gauges and histograms kept in a Registry, rendered in
// the Prometheus text exposition format (0.0.4) and served over HTTP at
// /metrics by a MetricsServer.
//
// The hot path is one relaxed atomic operation per update: look a series up
// once with Get* and keep the reference, since Get* takes the registry lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::metrics {

// Label name/value pairs. Their order does not matter: {a,b} and {b,a} name
// the same series, which is rendered with its labels sorted by name.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count, rendered as an integer.
class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with upper bounds (inclusive, as
// Prometheus' `le`), plus their sum. Buckets are stored per bucket and made
// cumulative when rendered, so an observation touches one bucket and the sum.
class Histogram {
 public:
  void Observe(double value);

 private:
  friend class Registry;
  explicit Histogram(const std::vector<double>& bounds);

  const std::vector<double>& bounds_;  // the family's; finite, strictly increasing
  // One per bound, then the +Inf bucket; _count is their total, so it always
  // equals the +Inf bucket even while observations race with a render.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the series of family `name` with these labels, creating the
  // family and series on first use; the first `help` given for a family is
  // kept. References stay valid for the Registry's lifetime. Misuse is a
  // programming error and aborts with a message: a name used with another
  // type, an invalid metric or label name, a label name given twice, a
  // histogram family asked for with other bounds, or bounds that are not
  // strictly increasing (a trailing +Inf is implied and may be omitted).
  Counter& GetCounter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& GetGauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& GetHistogram(std::string_view name, std::string_view help,
                          const std::vector<double>& bounds, const Labels& labels = {});

  // Runs at every Render before output (to refresh gauges from live state);
  // may call Get* on the registry, but not Render. Renders are serialized,
  // so a collector never runs concurrently with itself.
  void AddCollector(std::function<void(Registry&)> collect);

  // Prometheus text format: one # HELP and # TYPE per family, families sorted
  // by name, series sorted by labels, label values escaped (\\, \", \n),
  // counters printed as integers, doubles printed so they round-trip (+Inf
  // for the last bucket), laid out as the Go client does: 0.0001, 5e-05.
  std::string Render();

 private:
  struct Family;
  // Finds or creates a family; mutex_ held. `type` is its # TYPE word.
  Family& FamilyFor(std::string_view name, std::string_view help, std::string_view type);

  std::mutex render_mutex_;  // serializes Render, collectors included
  std::mutex mutex_;         // guards families_ and collectors_
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  std::vector<std::function<void(Registry&)>> collectors_;
};

// Default latency buckets in seconds, 50us .. 10s.
const std::vector<double>& LatencyBuckets();

// Serves GET /metrics (Content-Type: text/plain; version=0.0.4;
// charset=utf-8) and 404 for anything else, on its own threads. The
// registry must outlive the server.
class MetricsServer {
 public:
  // Listens on "host:port" (port 0 picks a free one). Failing to resolve or
  // bind (address in use, an address not on this host) is a Status.
  static Result<std::unique_ptr<MetricsServer>> Start(Registry& registry,
                                                      const std::string& address);
  ~MetricsServer();  // stops and joins
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sealfs::metrics

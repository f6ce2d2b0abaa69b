#include "sealfs/rpc/durable_counters.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "common.pb.h"
#include "sealfs/rpc/process.h"

namespace sealfs::metrics {
namespace {
constexpr char kSeparator = '\x1f';  // never in a metric name or label value we make

// The name and labels a series key was made from.
std::pair<std::string, Labels> ParseSeriesKey(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t end = key.find(kSeparator, start);
    parts.push_back(key.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  Labels labels;
  for (size_t i = 1; i + 1 < parts.size(); i += 2) labels.emplace_back(parts[i], parts[i + 1]);
  return {parts.front(), labels};
}
}  // namespace

DurableCounters::DurableCounters(Totals saved, Saver save, std::map<std::string, std::string> help)
    : totals_(std::move(saved)), save_(std::move(save)), help_(std::move(help)) {}

std::string DurableCounters::SeriesKey(std::string_view name, const Labels& labels) {
  std::string key(name);
  for (const auto& [label, value] : labels) {
    key.push_back(kSeparator);
    key += label;
    key.push_back(kSeparator);
    key += value;
  }
  return key;
}

void DurableCounters::Add(std::string_view name, const Labels& labels, uint64_t n) {
  std::string key = SeriesKey(name, labels);
  std::lock_guard<std::mutex> lock(mutex_);
  totals_[key] += n;
}

Status DurableCounters::Publish(Registry& registry) {
  std::lock_guard<std::mutex> publishing(publish_mutex_);
  Totals snapshot;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    snapshot = totals_;
  }
  // Unchanged since the last save: nothing to write.
  if (snapshot != saved_) {
    SEALFS_RETURN_IF_ERROR(save_(snapshot));
    saved_ = snapshot;
  }
  for (const auto& [key, total] : snapshot) {
    auto [name, labels] = ParseSeriesKey(key);
    auto help = help_.find(name);
    Counter& counter = registry.GetCounter(name, help == help_.end() ? name : help->second, labels);
    if (total > counter.value()) counter.Add(total - counter.value());
  }
  return Status::Ok();
}

rpc::Dispatcher::Observer RequestObserver(DurableCounters& counters, Registry& registry,
                                          const std::string& prefix) {
  std::string requests = prefix + "_requests_total";
  std::string errors = prefix + "_request_errors_total";
  std::string duration = prefix + "_request_duration_seconds";
  return [&counters, &registry, requests, errors, duration](std::string_view method, int status,
                                                            std::chrono::nanoseconds took) {
    Labels labels{{"method", std::string(method)}};
    counters.Add(requests, labels);
    if (status != 0) {
      const char* name = strerrorname_np(status);
      counters.Add(errors, {{"method", std::string(method)}, {"error", name ? name : "unknown"}});
    }
    registry
        .GetHistogram(duration, "Time a request took to serve, by method.", LatencyBuckets(),
                      labels)
        .Observe(std::chrono::duration<double>(took).count());
  };
}

std::map<std::string, std::string> RequestCounterHelp(const std::string& prefix) {
  return {
      {prefix + "_requests_total", "Requests served, by method."},
      {prefix + "_request_errors_total", "Requests answered with an error, by method and error."}};
}

Result<std::unique_ptr<MetricsServer>> ServeMetrics(Registry& registry, const std::string& address,
                                                    const std::string& port_file) {
  if (address.empty()) return std::unique_ptr<MetricsServer>();
  auto server = MetricsServer::Start(registry, address);
  if (!server.ok()) return server.status();
  if (!port_file.empty()) {
    SEALFS_RETURN_IF_ERROR(
        WriteFileAtomically(port_file, std::to_string((*server)->port()) + "\n"));
  }
  return server;
}

DurableCounters::Totals LoadTotalsFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  pb::CounterSnapshot snapshot;
  DurableCounters::Totals totals;
  if (in && snapshot.ParseFromString(bytes.str())) {
    totals.insert(snapshot.totals().begin(), snapshot.totals().end());
  }
  return totals;
}

Status SaveTotalsFile(const std::string& path, const DurableCounters::Totals& totals) {
  pb::CounterSnapshot snapshot;
  snapshot.mutable_totals()->insert(totals.begin(), totals.end());
  return WriteFileAtomically(path, snapshot.SerializeAsString());
}

}  // namespace sealfs::metrics

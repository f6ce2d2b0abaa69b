// Counters whose totals never go back, not even across a restart: each
// server keeps them in memory, saves them with a function of its own (to
// its store), and publishes to /metrics only totals it has saved. So a
// scrape never sees a value that a restart would start again below.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "sealfs/rpc/metrics.h"
#include "sealfs/rpc/service.h"
#include "sealfs/rpc/status.h"

namespace sealfs::metrics {

class DurableCounters {
 public:
  using Totals = std::map<std::string, uint64_t>;  // series key -> total
  using Saver = std::function<Status(const Totals&)>;

  // `help`: the help text of each counter family by name.
  DurableCounters(Totals saved, Saver save, std::map<std::string, std::string> help);

  void Add(std::string_view name, const Labels& labels, uint64_t n = 1);
  // Saves the totals, then sets the registry's counters to them. On a
  // failed save the registry keeps what it had (what was saved before).
  Status Publish(Registry& registry);

  static std::string SeriesKey(std::string_view name, const Labels& labels);

 private:
  std::mutex mutex_;
  Totals totals_;
  std::mutex publish_mutex_;
  Totals saved_;  // as last saved (under publish_mutex_)
  Saver save_;
  std::map<std::string, std::string> help_;
};

// Counts every request a dispatcher runs into `counters` (PREFIX_requests_total
// and PREFIX_request_errors_total by method) and times it into the
// registry's PREFIX_request_duration_seconds histogram.
rpc::Dispatcher::Observer RequestObserver(DurableCounters& counters, Registry& registry,
                                          const std::string& prefix);
// Help texts of the counters RequestObserver makes.
std::map<std::string, std::string> RequestCounterHelp(const std::string& prefix);

// Starts serving /metrics on `address` and writes its port to `port_file`
// (if given); with no address, serves nothing (a null server).
Result<std::unique_ptr<MetricsServer>> ServeMetrics(Registry& registry, const std::string& address,
                                                    const std::string& port_file);

// Loads and saves totals as a CounterSnapshot in a file (atomically).
DurableCounters::Totals LoadTotalsFile(const std::string& path);
Status SaveTotalsFile(const std::string& path, const DurableCounters::Totals& totals);

}  // namespace sealfs::metrics

// The metrics registry and its /metrics endpoint: exact Prometheus text
// (sorting, escaping, number formats, cumulative buckets), exact totals
// under concurrent updates, collectors, and a real scrape over loopback.
#include "sealfs/rpc/metrics.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

namespace sealfs::metrics {
namespace {

TEST(MetricsRender, CounterWithLabelsSortedAndEscaped) {
  Registry registry;
  // Label order in the call does not matter: both name one series.
  registry.GetCounter("rpc_calls_total", "Calls served.", {{"op", "read"}, {"code", "ok"}}).Add(3);
  registry.GetCounter("rpc_calls_total", "ignored", {{"code", "ok"}, {"op", "read"}}).Add(2);
  registry.GetCounter("rpc_calls_total", "", {{"op", "a\\b\"c\nd"}, {"code", "err"}}).Add();
  registry.GetCounter("rpc_calls_total", "").Add(7);
  EXPECT_EQ(registry.Render(),
            "# HELP rpc_calls_total Calls served.\n"
            "# TYPE rpc_calls_total counter\n"
            "rpc_calls_total 7\n"
            "rpc_calls_total{code=\"err\",op=\"a\\\\b\\\"c\\nd\"} 1\n"
            "rpc_calls_total{code=\"ok\",op=\"read\"} 5\n");
}

TEST(MetricsRender, CounterPrintsLargeValuesAsIntegers) {
  Registry registry;
  Counter& bytes = registry.GetCounter("bytes_total", "Bytes.");
  bytes.Add(uint64_t{1} << 62);
  bytes.Add(12345);
  EXPECT_EQ(bytes.value(), (uint64_t{1} << 62) + 12345);
  EXPECT_EQ(registry.Render(),
            "# HELP bytes_total Bytes.\n"
            "# TYPE bytes_total counter\n"
            "bytes_total 4611686018427400249\n");
}

TEST(MetricsRender, FamiliesSortedByNameWithHelpEscaped) {
  Registry registry;
  registry.GetGauge("zeta", "Last.").Set(1);
  registry.GetCounter("alpha", "Back\\slash and\nnewline, \"quotes\" kept.").Add(1);
  registry.GetGauge("mid:ratio", "Middle.", {{"b", "2"}}).Set(-2.5);
  registry.GetGauge("mid:ratio", "Middle.", {{"a", "9"}}).Set(1e21);
  EXPECT_EQ(registry.Render(),
            "# HELP alpha Back\\\\slash and\\nnewline, \"quotes\" kept.\n"
            "# TYPE alpha counter\n"
            "alpha 1\n"
            "# HELP mid:ratio Middle.\n"
            "# TYPE mid:ratio gauge\n"
            "mid:ratio{a=\"9\"} 1e+21\n"
            "mid:ratio{b=\"2\"} -2.5\n"
            "# HELP zeta Last.\n"
            "# TYPE zeta gauge\n"
            "zeta 1\n");
}

TEST(MetricsRender, GaugeDoublesRoundTrip) {
  Registry registry;
  Gauge& gauge = registry.GetGauge("g", "G.", {{"k", "sum"}});
  gauge.Set(0.1);
  gauge.Add(0.2);
  EXPECT_EQ(gauge.value(), 0.1 + 0.2);
  registry.GetGauge("g", "G.", {{"k", "inf"}}).Set(std::numeric_limits<double>::infinity());
  registry.GetGauge("g", "G.", {{"k", "minf"}}).Set(-std::numeric_limits<double>::infinity());
  registry.GetGauge("g", "G.", {{"k", "nan"}}).Set(std::nan(""));
  registry.GetGauge("g", "G.", {{"k", "tiny"}}).Set(5e-324);
  registry.GetGauge("g", "G.", {{"k", "zero"}});
  // Laid out as Go's FormatFloat(v, 'g', -1, 64): fixed for exponents -4..5.
  registry.GetGauge("g", "G.", {{"k", "big"}}).Set(1234567);
  registry.GetGauge("g", "G.", {{"k", "int"}}).Set(123456);
  registry.GetGauge("g", "G.", {{"k", "small"}}).Set(0.0001);
  registry.GetGauge("g", "G.", {{"k", "smaller"}}).Set(1.234e-05);
  EXPECT_EQ(registry.Render(),
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{k=\"big\"} 1.234567e+06\n"
            "g{k=\"inf\"} +Inf\n"
            "g{k=\"int\"} 123456\n"
            "g{k=\"minf\"} -Inf\n"
            "g{k=\"nan\"} NaN\n"
            "g{k=\"small\"} 0.0001\n"
            "g{k=\"smaller\"} 1.234e-05\n"
            "g{k=\"sum\"} 0.30000000000000004\n"
            "g{k=\"tiny\"} 5e-324\n"
            "g{k=\"zero\"} 0\n");
  EXPECT_EQ(std::stod("0.30000000000000004"), 0.1 + 0.2);
}

TEST(MetricsRender, RandomDoublesRoundTrip) {
  Registry registry;
  Gauge& gauge = registry.GetGauge("x", "X.");
  const std::string prefix = "# HELP x X.\n# TYPE x gauge\nx ";
  std::mt19937_64 random(42);
  for (int i = 0; i < 20000; ++i) {
    double value;
    uint64_t bits = random();
    std::memcpy(&value, &bits, sizeof(value));
    if (!std::isfinite(value)) continue;
    if (i % 2 == 0) value = std::ldexp(static_cast<double>(bits >> 11), -40);  // everyday sizes
    gauge.Set(value);
    std::string text = registry.Render();
    ASSERT_EQ(text.compare(0, prefix.size(), prefix), 0) << text;
    std::string printed = text.substr(prefix.size(), text.size() - prefix.size() - 1);
    EXPECT_EQ(std::strtod(printed.c_str(), nullptr), value) << printed;
  }
}

TEST(MetricsRender, HistogramBucketsAreCumulative) {
  Registry registry;
  // A trailing +Inf bound is implied; giving it changes nothing.
  std::vector<double> bounds = {0.001, 0.5, 2, std::numeric_limits<double>::infinity()};
  Histogram& reads = registry.GetHistogram("op_seconds", "Op latency.", bounds, {{"op", "read"}});
  for (double v : {0.0005, 0.001, 0.25, 0.5, 1.0, 3.0, 100.0}) reads.Observe(v);
  registry.GetHistogram("op_seconds", "", {0.001, 0.5, 2}, {{"op", "write"}}).Observe(0.75);
  EXPECT_EQ(registry.Render(),
            "# HELP op_seconds Op latency.\n"
            "# TYPE op_seconds histogram\n"
            "op_seconds_bucket{op=\"read\",le=\"0.001\"} 2\n"  // bounds are inclusive
            "op_seconds_bucket{op=\"read\",le=\"0.5\"} 4\n"
            "op_seconds_bucket{op=\"read\",le=\"2\"} 5\n"
            "op_seconds_bucket{op=\"read\",le=\"+Inf\"} 7\n"
            "op_seconds_sum{op=\"read\"} 104.7515\n"
            "op_seconds_count{op=\"read\"} 7\n"
            "op_seconds_bucket{op=\"write\",le=\"0.001\"} 0\n"
            "op_seconds_bucket{op=\"write\",le=\"0.5\"} 0\n"
            "op_seconds_bucket{op=\"write\",le=\"2\"} 1\n"
            "op_seconds_bucket{op=\"write\",le=\"+Inf\"} 1\n"
            "op_seconds_sum{op=\"write\"} 0.75\n"
            "op_seconds_count{op=\"write\"} 1\n");
}

TEST(MetricsRender, HistogramWithoutLabelsAndNaN) {
  Registry registry;
  Histogram& h = registry.GetHistogram("h", "H.", {1});
  h.Observe(-5);
  h.Observe(std::nan(""));  // goes to +Inf, as in the Go client
  EXPECT_EQ(registry.Render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\n"
            "h_bucket{le=\"+Inf\"} 2\n"
            "h_sum NaN\n"
            "h_count 2\n");
}

TEST(MetricsRender, LatencyBuckets) {
  const std::vector<double>& bounds = LatencyBuckets();
  ASSERT_FALSE(bounds.empty());
  EXPECT_EQ(bounds.front(), 50e-6);
  EXPECT_EQ(bounds.back(), 10.0);
  for (size_t i = 1; i < bounds.size(); ++i) EXPECT_LT(bounds[i - 1], bounds[i]);

  Registry registry;
  registry.GetHistogram("lat", "L.", bounds).Observe(75e-6);
  std::string text = registry.Render();
  EXPECT_NE(text.find("lat_bucket{le=\"5e-05\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_bucket{le=\"0.0001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_bucket{le=\"0.00025\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_bucket{le=\"10\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_sum 7.5e-05\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, SameSeriesSameReference) {
  Registry registry;
  Counter& a = registry.GetCounter("c", "C.", {{"x", "1"}, {"y", "2"}});
  EXPECT_EQ(&a, &registry.GetCounter("c", "C.", {{"y", "2"}, {"x", "1"}}));
  EXPECT_NE(&a, &registry.GetCounter("c", "C.", {{"x", "1"}}));
  // References survive many later insertions.
  for (int i = 0; i < 1000; ++i) registry.GetCounter("c", "C.", {{"i", std::to_string(i)}});
  a.Add(4);
  EXPECT_EQ(registry.GetCounter("c", "C.", {{"x", "1"}, {"y", "2"}}).value(), 4u);
}

TEST(MetricsRegistry, ConcurrentUpdatesAreExact) {
  Registry registry;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry] {
      // Every thread looks the series up itself, racing on creation too.
      Counter& counter = registry.GetCounter("ops_total", "Ops.", {{"kind", "x"}});
      Gauge& gauge = registry.GetGauge("level", "Level.");
      Histogram& histogram = registry.GetHistogram("sizes", "Sizes.", {10, 100});
      for (int i = 0; i < kPerThread; ++i) {
        counter.Add();
        gauge.Add(1);
        histogram.Observe(i % 2 == 0 ? 5 : 50);
      }
    });
  }
  // Renders racing with the updates must be safe too.
  for (int i = 0; i < 20; ++i) registry.Render();
  for (std::thread& thread : threads) thread.join();

  constexpr uint64_t kTotal = uint64_t{kThreads} * kPerThread;
  EXPECT_EQ(registry.GetCounter("ops_total", "", {{"kind", "x"}}).value(), kTotal);
  EXPECT_EQ(registry.GetGauge("level", "").value(), static_cast<double>(kTotal));
  std::string text = registry.Render();
  EXPECT_NE(text.find("ops_total{kind=\"x\"} 400000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("level 400000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes_bucket{le=\"10\"} 200000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes_bucket{le=\"100\"} 400000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes_bucket{le=\"+Inf\"} 400000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes_sum 1.1e+07\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes_count 400000\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, CollectorsRunAtEveryRender) {
  Registry registry;
  int open_files = 3;
  int runs = 0;
  registry.AddCollector([&](Registry& r) {
    ++runs;
    r.GetGauge("open_files", "Open files.").Set(open_files);
    // A collector may create series on first use.
    r.GetCounter("collections_total", "Collector runs.").Add();
  });
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(registry.Render(),
            "# HELP collections_total Collector runs.\n"
            "# TYPE collections_total counter\n"
            "collections_total 1\n"
            "# HELP open_files Open files.\n"
            "# TYPE open_files gauge\n"
            "open_files 3\n");
  open_files = 8;
  std::string second = registry.Render();
  EXPECT_EQ(runs, 2);
  EXPECT_NE(second.find("open_files 8\n"), std::string::npos) << second;
  EXPECT_NE(second.find("collections_total 2\n"), std::string::npos) << second;
}

TEST(MetricsRegistryDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Registry registry;
  registry.GetCounter("requests", "R.");
  registry.GetHistogram("latency", "L.", {1, 2});
  EXPECT_DEATH(registry.GetGauge("requests", "R."),
               "'requests': is a counter, asked for as a gauge");
  EXPECT_DEATH(registry.GetCounter("1bad", "B."), "'1bad': invalid metric name");
  EXPECT_DEATH(registry.GetCounter("c", "C.", {{"bad-name", "v"}}), "invalid label name");
  EXPECT_DEATH(registry.GetCounter("c", "C.", {{"__reserved", "v"}}), "invalid label name");
  EXPECT_DEATH(registry.GetCounter("c", "C.", {{"a", "1"}, {"a", "2"}}), "given twice");
  EXPECT_DEATH(registry.GetHistogram("latency", "L.", {1, 3}), "other bounds");
  EXPECT_DEATH(registry.GetHistogram("h2", "H.", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry.GetHistogram("h3", "H.", {1}, {{"le", "x"}}), "'le'");
}

TEST(MetricsServer, ServesMetricsOverLoopback) {
  Registry registry;
  registry.GetCounter("scraped_things_total", "Things.", {{"k", "v"}}).Add(42);
  registry.GetHistogram("lat_seconds", "L.", LatencyBuckets()).Observe(0.003);
  auto server = MetricsServer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_NE((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response->body, registry.Render());
  EXPECT_NE(response->body.find("scraped_things_total{k=\"v\"} 42\n"), std::string::npos);

  auto other = client.Get("/other");
  ASSERT_TRUE(other) << httplib::to_string(other.error());
  EXPECT_EQ(other->status, 404);
  auto post = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post) << httplib::to_string(post.error());
  EXPECT_EQ(post->status, 404);
}

TEST(MetricsServer, AddressInUseIsAStatus) {
  Registry registry;
  auto first = MetricsServer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Start(registry, taken);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), EADDRINUSE);
  EXPECT_NE(second.status().message().find(taken), std::string::npos) << second.status().message();
  // The first server still answers alone.
  httplib::Client client("127.0.0.1", (*first)->port());
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(MetricsServer, BadAddressesAreAStatus) {
  Registry registry;
  for (const char* address : {"127.0.0.1", "127.0.0.1:99999", ":9100", "127.0.0.1:x"}) {
    auto server = MetricsServer::Start(registry, address);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), EINVAL) << address;
  }
}

TEST(MetricsServer, StopsPromptlyWithAnIdleConnection) {
  Registry registry;
  auto server = MetricsServer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_keep_alive(true);
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response);
  // The keep-alive connection stays open while the server stops.
  auto start = std::chrono::steady_clock::now();
  server->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace sealfs::metrics

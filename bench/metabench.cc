// sealfs-metabench: the metadata workload of the benchmark harness, run
// against any directory (a SealFS mount or a local one).
//
//   sealfs-metabench DIR [--files N] [--procs P]
//
// Phases, each timed on its own: create (with a 4 KiB write), stat, read,
// remove of N files in one directory; mkdir, rename, rmdir of N directories.
// P processes share the work (distinct names, same directory). Prints one
// JSON object: per phase the rate (ops/s), mean and p99 latency (us).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct PhaseResult {
  std::string name;
  double seconds = 0;
  std::vector<float> latencies_us;
};

// Runs op(i) for this process's share, recording each latency.
std::vector<float> RunShare(int count, int procs, int rank, const std::function<bool(int)>& op) {
  std::vector<float> latencies;
  for (int i = rank; i < count; i += procs) {
    auto start = Clock::now();
    if (!op(i)) {
      std::fprintf(stderr, "sealfs-metabench: operation %d failed: %s\n", i, std::strerror(errno));
      _exit(1);
    }
    latencies.push_back(std::chrono::duration<float, std::micro>(Clock::now() - start).count());
  }
  return latencies;
}

bool ReadAll(int fd, void* buffer, size_t size) {
  char* p = static_cast<char*>(buffer);
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Forks `procs` workers for one phase; gathers their latencies through pipes.
PhaseResult Phase(const std::string& name, int count, int procs,
                  const std::function<bool(int)>& op) {
  PhaseResult result;
  result.name = name;
  std::vector<std::pair<pid_t, int>> workers;
  auto start = Clock::now();
  for (int rank = 0; rank < procs; ++rank) {
    int fds[2];
    if (pipe(fds) != 0) std::exit(1);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      std::vector<float> latencies = RunShare(count, procs, rank, op);
      uint64_t n = latencies.size();
      if (write(fds[1], &n, sizeof n) != sizeof n) _exit(1);
      size_t bytes = latencies.size() * sizeof(float);
      const char* p = reinterpret_cast<const char*>(latencies.data());
      while (bytes > 0) {
        ssize_t w = write(fds[1], p, bytes);
        if (w <= 0) _exit(1);
        p += w;
        bytes -= static_cast<size_t>(w);
      }
      _exit(0);
    }
    close(fds[1]);
    workers.emplace_back(pid, fds[0]);
  }
  for (auto& [pid, fd] : workers) {
    uint64_t n = 0;
    if (ReadAll(fd, &n, sizeof n)) {
      std::vector<float> latencies(n);
      if (ReadAll(fd, latencies.data(), n * sizeof(float))) {
        result.latencies_us.insert(result.latencies_us.end(), latencies.begin(), latencies.end());
      }
    }
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "sealfs-metabench: phase %s failed\n", name.c_str());
      std::exit(1);
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: sealfs-metabench DIR [--files N] [--procs P]\n");
    return 2;
  }
  std::string base = argv[1];
  int files = 10000, procs = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--files")
      files = std::atoi(argv[i + 1]);
    else if (flag == "--procs")
      procs = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "sealfs-metabench: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  if (files <= 0 || procs <= 0) return 2;
  std::string dir = base + "/metabench-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) {
    std::fprintf(stderr, "sealfs-metabench: cannot create %s: %s\n", dir.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const std::string block(4096, 'm');
  auto file = [&](int i) { return dir + "/file-" + std::to_string(i); };
  auto subdir = [&](int i) { return dir + "/dir-" + std::to_string(i); };
  std::vector<PhaseResult> results;
  results.push_back(Phase("create", files, procs, [&](int i) {
    int fd = open(file(i).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) return false;
    bool ok = write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size());
    return close(fd) == 0 && ok;
  }));
  results.push_back(Phase("stat", files, procs, [&](int i) {
    struct stat st;
    return stat(file(i).c_str(), &st) == 0 && st.st_size == 4096;
  }));
  results.push_back(Phase("read", files, procs, [&](int i) {
    char buffer[4096];
    int fd = open(file(i).c_str(), O_RDONLY);
    if (fd < 0) return false;
    bool ok = read(fd, buffer, sizeof buffer) == 4096;
    return close(fd) == 0 && ok;
  }));
  results.push_back(
      Phase("remove", files, procs, [&](int i) { return unlink(file(i).c_str()) == 0; }));
  results.push_back(
      Phase("mkdir", files, procs, [&](int i) { return mkdir(subdir(i).c_str(), 0755) == 0; }));
  results.push_back(Phase("rename", files, procs, [&](int i) {
    return rename(subdir(i).c_str(), (subdir(i) + "-moved").c_str()) == 0;
  }));
  results.push_back(Phase("rmdir", files, procs,
                          [&](int i) { return rmdir((subdir(i) + "-moved").c_str()) == 0; }));
  rmdir(dir.c_str());

  std::printf("{\"files\": %d, \"procs\": %d, \"phases\": [", files, procs);
  for (size_t p = 0; p < results.size(); ++p) {
    auto& latencies = results[p].latencies_us;
    std::sort(latencies.begin(), latencies.end());
    double sum = 0;
    for (float value : latencies) sum += value;
    double mean = latencies.empty() ? 0 : sum / static_cast<double>(latencies.size());
    double p99 =
        latencies.empty()
            ? 0
            : latencies[static_cast<size_t>(0.99 * static_cast<double>(latencies.size() - 1))];
    std::printf("%s{\"name\": \"%s\", \"ops_per_sec\": %.1f, \"mean_us\": %.1f, \"p99_us\": %.1f}",
                p == 0 ? "" : ", ", results[p].name.c_str(),
                static_cast<double>(latencies.size()) / results[p].seconds, mean, p99);
  }
  std::printf("]}\n");
  return 0;
}

// Runs a libFuzzer target over files, without libFuzzer: the seed corpora
// (tests/fuzz/*/) replayed as unit tests in every build, GCC's included, so
// a seed that crashes or breaks a property fails `meson test` everywhere.
// Arguments: files or directories (their regular files, not recursive).
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> Expand(const std::string& arg) {
  struct stat st {};
  if (::stat(arg.c_str(), &st) != 0) return {};
  if (!S_ISDIR(st.st_mode)) return {arg};
  std::vector<std::string> files;
  if (DIR* dir = ::opendir(arg.c_str())) {
    while (const dirent* e = ::readdir(dir)) {
      const std::string path = arg + "/" + e->d_name;
      if (e->d_name[0] != '.' && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        files.push_back(path);
      }
    }
    ::closedir(dir);
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  int replayed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::vector<std::string> files = Expand(argv[i]);
    if (files.empty()) {
      std::fprintf(stderr, "%s: no such file, or an empty directory\n", argv[i]);
      return 1;
    }
    for (const std::string& file : files) {
      std::ifstream in(file, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++replayed;
    }
  }
  std::printf("replayed %d input(s)\n", replayed);
  return replayed > 0 ? 0 : 1;
}

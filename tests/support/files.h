// Small file helpers for tests: read a whole file, and replace one atomically (a rename, as an
// operator's rotation of certificates should).
#ifndef MESHD_TESTS_SUPPORT_FILES_H_
#define MESHD_TESTS_SUPPORT_FILES_H_

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace meshd::testing {

// The file's bytes; "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes `text` to `path` by renaming a sibling over it.
inline void ReplaceFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".new";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, path);
}

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_FILES_H_

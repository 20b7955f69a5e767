// The inside of meshd::DeviceMesh: the maths' value, this rank, and the key its groups use.
#ifndef MESHD_CLIENT_SRC_DEVICE_MESH_IMPL_H_
#define MESHD_CLIENT_SRC_DEVICE_MESH_IMPL_H_

#include <string>

#include "common/layout/device_mesh.h"
#include "meshd/client.h"

namespace meshd {

struct DeviceMesh::Impl {
  layout::DeviceMesh mesh;
  int64_t rank = 0;
  std::string key;       // this mesh's key (root: its name or "#n")
  std::string root_key;  // the root mesh's key
};

}  // namespace meshd

#endif  // MESHD_CLIENT_SRC_DEVICE_MESH_IMPL_H_

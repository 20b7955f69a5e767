/* The C ABI of an installed meshd (<meshd/client_c.h>): attaching through a socket that does not
 * exist returns UNAVAILABLE (14) at once, with a message. Built by tests/install/install_test.sh. */
#include <stdio.h>

#include <meshd/client_c.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <socket path with no socket>\n", argv[0]);
    return 2;
  }
  char err[512] = "";
  meshd_client* client = NULL;
  int rc = meshd_attach(argv[1], "install-test", 0, 1, 1, 2000, &client, err, sizeof err);
  printf("meshd_attach: %d %s\n", rc, err);
  if (client != NULL) meshd_detach(client);
  return rc == 14 ? 0 : 1;
}

{
  "targets": [
    {
      "target_name": "typevisor_io",
      "sources": ["io.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}

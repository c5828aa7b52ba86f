return {
    data_dir = "/tmp/x",
    bogus_key = 1,
}

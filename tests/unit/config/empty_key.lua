-- An empty key in a section with optional keys: an unknown key, not a hang
-- (found by fuzz_config: the key search looped forever on "").
return {
    ["rpc-pin"] = { [""] = 1 },
}

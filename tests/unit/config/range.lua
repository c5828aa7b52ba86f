return {
    limits = { max_frame = -5 },
}

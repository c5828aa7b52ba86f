-- An empty table merges to nothing: the defaults stay.
return {
    limits = {},
    front = {},
}

# embed_bytes.cmake — writes a C file holding a binary file's bytes (no xxd needed):
#   cmake -DIN=file.bin -DOUT=file.c -DNAME=symbol -P embed_bytes.cmake
# defines `const unsigned char NAME[]` and `const unsigned long NAME_len`.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# Break the one long line every 16 bytes (80 characters of "0xNN,") for readable output.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}"
     "/* Generated from ${IN} by cmake/embed_bytes.cmake; do not edit. */\n"
     "const unsigned char ${NAME}[${n} + 1] = {\n${bytes}0};\n"
     "const unsigned long ${NAME}_len = ${n};\n")

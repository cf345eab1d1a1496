# cmake -DIN=page.html -DOUT=page.h -DNAME=sym -P embed.cmake: the bytes of IN as a C array, so the
# chat page ships inside the binary with no build step of its own.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n" body "${body}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by embed.cmake; do not edit.\nstatic const unsigned char ${NAME}[] = {\n${body}\n};\n")
file(RENAME "${OUT}.tmp" "${OUT}")

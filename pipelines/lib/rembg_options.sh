# rembg's command-line options, as rembgfilter properties, for the scripts that do what rembg
# does. `rembg_options "$@"` sets PROPERTIES to the arguments with -a, -af N, -ab N and -ae N
# (and their long forms) replaced by alpha-matting=true and alpha-matting-foreground-threshold=N,
# alpha-matting-background-threshold=N, alpha-matting-erode-size=N; the rest pass unchanged.
rembg_options() {
    PROPERTIES=()
    local property
    while [ $# -gt 0 ]; do
        property=
        case "$1" in
            -a | --alpha-matting) PROPERTIES+=(alpha-matting=true) ;;
            -af | --alpha-matting-foreground-threshold) property=alpha-matting-foreground-threshold ;;
            -ab | --alpha-matting-background-threshold) property=alpha-matting-background-threshold ;;
            -ae | --alpha-matting-erode-size) property=alpha-matting-erode-size ;;
            *) PROPERTIES+=("$1") ;;
        esac
        if [ -n "$property" ]; then
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
                echo "$1 needs a whole number (rembg's $property), got '${2-nothing}'" >&2
                exit 2
            fi
            PROPERTIES+=("$property=$2")
            shift
        fi
        shift
    done
}

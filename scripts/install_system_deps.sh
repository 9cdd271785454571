#!/usr/bin/env bash
# System packages the *training-data generator* needs (fonts, incl. CJK) and the real images the
# training set and the benchmark draw from.  Inference needs none of them.  Debian/Ubuntu, as root.
set -euo pipefail
pkgs=(fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-noto-cjk fonts-wqy-zenhei
      fonts-wqy-microhei fonts-arphic-ukai fonts-arphic-uming fonts-ipafont-gothic fonts-ipafont-mincho
      fonts-nanum fonts-freefont-ttf fonts-open-sans fonts-roboto-unhinted fonts-crosextra-carlito
      fonts-crosextra-caladea fonts-urw-base35 fonts-cantarell fonts-linuxlibertine fonts-ebgaramond
      fonts-noto-core fonts-lato fonts-firacode fonts-inconsolata
      gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers sway-backgrounds ukui-wallpapers
      lomiri-wallpapers adwaita-icon-theme)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then echo "system packages: all present"; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

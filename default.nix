# Hibernation for Nix users.
#
#   nix-build -A server      # result/bin/hibernation-server
#   nix-build -A cli         # result/bin/hibernation
#   nix-build                # both
#
# NixOS: import the module and turn it on:
#
#   imports = [ (import /path/to/hibernation { inherit pkgs; }).nixosModule ];
#   services.hibernation = {
#     enable = true;
#     siteUrl = "https://cache.example.com";
#     environmentFile = "/run/secrets/hibernation.env";   # S3_SECRET_KEY=..., DB_URL=...
#   };
{ pkgs ? import <nixpkgs> { } }:

let
  lib = pkgs.lib;
  version = "0.1.0";

  # Only what the build reads, so editing docs or tests does not rebuild.
  src = lib.cleanSourceWith {
    src = ./.;
    filter = path: type:
      let base = baseNameOf path;
      in !(lib.elem base [ "target" "data" ".git" ".ci" "tests" ]);
  };

  common = {
    inherit version src;
    cargoLock.lockFile = ./Cargo.lock;
    # The test suite needs Nix, PostgreSQL, S3 and a browser: run it with scripts/test.
    doCheck = false;
    meta = {
      license = lib.licenses.mit;
      platforms = lib.platforms.unix;
    };
  };

  server = pkgs.rustPlatform.buildRustPackage (common // {
    pname = "hibernation-server";
    cargoBuildFlags = [ "--package" "hibernation-server" "--bin" "hibernation-server" ];
    # The bundled libpq (pq-src) builds against OpenSSL.
    nativeBuildInputs = [ pkgs.pkg-config ];
    buildInputs = [ pkgs.openssl ];
    meta = common.meta // {
      description = "Self-hosted Nix binary cache server";
      mainProgram = "hibernation-server";
    };
  });

  cli = pkgs.rustPlatform.buildRustPackage (common // {
    pname = "hibernation";
    cargoBuildFlags = [ "--package" "hibernation" "--bin" "hibernation" ];
    postInstall = ''
      mkdir -p $out/share/bash-completion/completions $out/share/zsh/site-functions $out/share/fish/vendor_completions.d
      $out/bin/hibernation completions bash > $out/share/bash-completion/completions/hibernation
      $out/bin/hibernation completions zsh > $out/share/zsh/site-functions/_hibernation
      $out/bin/hibernation completions fish > $out/share/fish/vendor_completions.d/hibernation.fish
    '';
    meta = common.meta // {
      description = "Push Nix store paths to a Hibernation binary cache";
      mainProgram = "hibernation";
    };
  });

  nixosModule = { config, lib, pkgs, ... }:
    let
      cfg = config.services.hibernation;
      # systemd's StateDirectory: owned by the service's dynamic user, kept across restarts.
      dataDir = "/var/lib/hibernation";
    in {
      options.services.hibernation = {
        enable = lib.mkEnableOption "the Hibernation Nix binary cache server";
        package = lib.mkOption {
          type = lib.types.package;
          default = server;
          description = "The hibernation-server package.";
        };
        port = lib.mkOption {
          type = lib.types.port;
          default = 8000;
          description = "Port the server listens on (all interfaces).";
        };
        siteUrl = lib.mkOption {
          type = lib.types.str;
          example = "https://cache.example.com";
          description = "The URL people and Nix clients use (SITE_URL).";
        };
        virtualHostRouting = lib.mkOption {
          type = lib.types.bool;
          default = false;
          description = "Serve each cache at <cache>.<site host> (VIRTUAL_HOST_ROUTING).";
        };
        settings = lib.mkOption {
          type = lib.types.attrsOf lib.types.str;
          default = { };
          example = { LOG_LEVEL = "debug"; S3_HOST = "https://s3.example.com"; S3_BUCKET = "nars"; };
          description = "More environment variables (see the README's configuration table).";
        };
        environmentFile = lib.mkOption {
          type = lib.types.nullOr lib.types.path;
          default = null;
          description = "A file of secret environment variables (DB_URL, S3_SECRET_KEY, ...), kept out of the Nix store.";
        };
        openFirewall = lib.mkOption {
          type = lib.types.bool;
          default = false;
          description = "Open the port in the firewall.";
        };
      };

      config = lib.mkIf cfg.enable {
        systemd.services.hibernation = {
          description = "Hibernation Nix binary cache";
          wantedBy = [ "multi-user.target" ];
          after = [ "network-online.target" "postgresql.service" ];
          wants = [ "network-online.target" ];
          environment = {
            PORT = toString cfg.port;
            SITE_URL = cfg.siteUrl;
            DB_URL = "sqlite:${dataDir}/hibernation.db?mode=rwc";
            STORAGE_PATH = "${dataDir}/storage";
            VIRTUAL_HOST_ROUTING = lib.boolToString cfg.virtualHostRouting;
          } // cfg.settings;
          serviceConfig = {
            ExecStart = "${cfg.package}/bin/hibernation-server";
            DynamicUser = true;
            StateDirectory = "hibernation";
            WorkingDirectory = dataDir;
            EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
            Restart = "on-failure";
            NoNewPrivileges = true;
            ProtectSystem = "strict";
            ProtectHome = true;
            PrivateTmp = true;
            ReadWritePaths = [ dataDir ];
          };
        };
        networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
      };
    };
in
{
  inherit server cli nixosModule;
  default = pkgs.symlinkJoin {
    name = "hibernation-${version}";
    paths = [ server cli ];
  };
}

# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
WORKDIR C:\app
COPY build\ C:\app\
RUN Write-Host 'one' ; `
    Write-Host 'two'
ENV PATH="C:\tools;${PATH}" `
    HOME=C:\Users\app
RUN echo trailing backslash stays \
